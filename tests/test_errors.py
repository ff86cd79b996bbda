"""Every exception class the package defines subclasses ``DetectorError``, which carries a location."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from detector.errors import DetectorError

PACKAGE = Path(__file__).resolve().parents[1] / "detector"


def _exception_classes() -> list[tuple[str, str]]:
    """(module, class) for every class in the package whose name ends in Error, or that has a base
    whose name ends in Error or Exception (``Fenced(RuntimeError)``)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                if node.name.endswith("Error") or any(b.endswith(("Error", "Exception")) for b in bases):
                    out.append((module, node.name))
    return out


#: Only exceptions (``RuleError`` is a value: one problem of a file, collected into ``RuleLoadError``).
CLASSES = [
    (m, n)
    for m, n in _exception_classes()
    if issubclass(getattr(importlib.import_module(m), n), BaseException)
]


def test_the_scan_finds_the_known_subsystem_errors() -> None:
    names = {name for _, name in CLASSES}
    assert {"RuleLoadError", "ModelError", "IpIntelError", "SinkError", "StrictError", "Fenced"} <= names
    assert len(CLASSES) >= 12


@pytest.mark.parametrize(("module", "name"), CLASSES, ids=[n for _, n in CLASSES])
def test_every_error_subclasses_the_root(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, DetectorError), f"{module}.{name} does not subclass DetectorError"


def test_subsystem_errors_keep_their_message(tmp_path: Path) -> None:
    from detector.detect.allowlist import AllowList
    from detector.detect.rules.errors import ExpressionError
    from detector.errors import ConfigError

    bad = tmp_path / "allow.yaml"
    bad.write_text("type: account\n")  # a mapping, not a list of entries
    with pytest.raises(ConfigError) as info:
        AllowList.load(bad)
    assert isinstance(info.value, ValueError) and info.value.location == str(bad)
    err = ExpressionError("unexpected token", 4)
    assert str(err) == "unexpected token" and err.pos == 4
