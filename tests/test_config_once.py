"""Settings are read once per process by the composition root and passed down: one config file feeds
the daemon's and the engine's settings, environment variables win over it, and nothing in the package
writes to the environment."""

from __future__ import annotations

import ast
import os
from datetime import timedelta
from pathlib import Path

import pytest

from detector.app import build_engine, engine_settings
from detector.errors import ConfigError, DetectorError
from detector.runtime.stream.settings import StreamSettings, config_file

PACKAGE = Path(__file__).resolve().parents[1] / "detector"
ROOT = PACKAGE.parent


def test_one_file_configures_daemon_and_engine_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "detector.env"
    cfg.write_text(
        "DETECTOR_RULES_DIR=/from/file\nDETECTOR_WINDOWS__TICK=PT10M\n"
        "DETECTOR_STREAM_INPUT_TOPIC=from-file\nDETECTOR_STREAM_GROUP_ID=from-file\n"
    )
    monkeypatch.setenv("DETECTOR_STREAM_GROUP_ID", "from-env")
    before = dict(os.environ)
    es = engine_settings(config=config_file(cfg))
    s = StreamSettings(_env_file=config_file(cfg))  # type: ignore[call-arg]
    assert es.rules_dir == Path("/from/file") and es.windows.tick == timedelta(minutes=10)
    assert (s.input_topic, s.group_id) == ("from-file", "from-env")
    assert dict(os.environ) == before  # read, never written


def test_overrides_apply_on_settings_built_once() -> None:
    es = engine_settings(ROOT / "rules", models=False)
    engine = build_engine(settings=es)
    assert engine.settings is es and es.models_dir is None and len(engine.models) == 0
    assert engine_settings(allowlist=Path("a.yaml"), base=es).rules_dir == ROOT / "rules"


def test_a_missing_config_file_is_a_detector_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_file(tmp_path / "nope.env")
    assert isinstance(info.value, DetectorError) and info.value.location == str(tmp_path / "nope.env")


def test_nothing_in_the_package_writes_the_environment() -> None:
    writes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            target = None
            if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
                targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
                target = next((t for t in targets if "os.environ" in ast.unparse(t)), None)
            elif isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("os.putenv", "os.unsetenv") or (
                    name.startswith("os.environ.")
                    and name.rpartition(".")[2] in ("setdefault", "update", "pop", "clear")
                ):
                    target = node
            if target is not None:
                writes.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")
    assert writes == []
