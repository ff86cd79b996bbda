"""The Helm chart, rendered by Helm itself (Helm's Go SDK through ``helm-python-sdk``, a dev dependency:
no helm binary needed), and its state volume checked against the replica count.

Fail-over hands a failed replica's partitions to another one, which must read the checkpoints the first
one wrote: every replica has to mount the same state volume. One replica may use a ReadWriteOnce
volume; more need a ReadWriteMany one. Per-replica volumes (``volumeClaimTemplates``) give a standby no
checkpoint, or a stale one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "distillation-detector"
OLD_DEFAULT = Path(__file__).parent / "data" / "helm_old_default_statefulset.yaml"


def render(values: dict[str, Any]) -> dict[str, str]:
    """``helm template det --namespace t`` with ``values`` over the chart's defaults."""
    with helm.Chart.load(str(CHART)) as chart:
        out: dict[str, str] = chart.render(values, name="det", namespace="t")
        return out


def _objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for name, text in manifests.items():
        if name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def volume_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Why the workload's state volume cannot support its replica count (empty: it can)."""
    claims = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PersistentVolumeClaim"}
    problems: list[str] = []
    workloads = [o for o in objects if o["kind"] in {"StatefulSet", "Deployment"}]
    assert workloads, "no workload rendered"
    for w in workloads:
        replicas = int(w["spec"].get("replicas", 1))
        name = w["metadata"]["name"]
        if w["spec"].get("volumeClaimTemplates") and replicas > 1:
            modes = [t["spec"]["accessModes"] for t in w["spec"]["volumeClaimTemplates"]]
            problems.append(f"{name}: {replicas} replicas each get their own volume {modes}")
        volumes = {v["name"]: v for v in w["spec"]["template"]["spec"].get("volumes", [])}
        state = volumes.get("state")
        if state is None:
            if not w["spec"].get("volumeClaimTemplates"):
                problems.append(f"{name}: no state volume")
            continue
        if "emptyDir" in state and replicas > 1:
            problems.append(f"{name}: {replicas} replicas on a pod-local emptyDir state volume")
        claim_name = (state.get("persistentVolumeClaim") or {}).get("claimName")
        if claim_name is not None and claim_name in claims:
            modes = claims[claim_name]["spec"]["accessModes"]
            if replicas > 1 and "ReadWriteMany" not in modes:
                problems.append(f"{name}: {replicas} replicas share claim {claim_name} with modes {modes}")
    return problems


def test_default_is_one_replica_on_one_persistent_volume() -> None:
    objects = _objects(render({}))
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    assert sts["spec"]["replicas"] == 1 and "volumeClaimTemplates" not in sts["spec"]
    (pvc,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    state = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert volume_problems(objects) == []


def test_replicas_share_one_read_write_many_volume() -> None:
    manifests = render({"replicaCount": 3, "persistence": {"accessMode": "ReadWriteMany"}})
    objects = _objects(manifests)
    assert volume_problems(objects) == []
    (pvc,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    notes = manifests["distillation-detector/templates/NOTES.txt"]
    assert "3 replicas" in notes and "ReadWriteMany" in notes and "standby" in notes


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 2},
        {"replicaCount": 2, "persistence": {"accessMode": "ReadWriteOnce"}},
        {"replicaCount": 2, "persistence": {"enabled": False}},
    ],
)
def test_the_chart_refuses_replicas_without_a_shared_volume(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmRenderError, match="replicaCount > 1 needs"):
        render(values)


def test_an_existing_claim_is_mounted_not_created() -> None:
    objects = _objects(render({"replicaCount": 2, "persistence": {"existingClaim": "shared-nfs"}}))
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    state = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"]["claimName"] == "shared-nfs"


def test_the_check_fails_the_old_default() -> None:
    """Control: the chart's former default (2 replicas, a ReadWriteOnce volume each), as Helm rendered
    it, fails the volume check, so the passes above mean something."""
    objects = [d for d in yaml.safe_load_all(OLD_DEFAULT.read_text()) if d]
    problems = volume_problems(objects)
    assert problems and "2 replicas each get their own volume" in problems[0]


def test_values_document_the_choice() -> None:
    values = (CHART / "values.yaml").read_text()
    assert "replicaCount: 1" in values and "ReadWriteMany" in values and "accessMode: ReadWriteOnce" in values
    assert "ReadWriteMany" in (CHART / "templates" / "NOTES.txt").read_text()
