"""The composition root: the one place that wires settings, rules, models, IP intelligence and the
allow-list into an engine. The CLI, the daemon's commands and the lab call it; nothing below imports it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detector.engine import Engine
    from detector.settings import EngineSettings


def _settings(
    rules_dir: Path | None, ip_intel: Path | None, allowlist: Path | None, models: Path | bool = True
) -> EngineSettings:
    from detector.settings import EngineSettings

    s = EngineSettings()
    updates: dict[str, object] = {}
    if models is False:
        updates["models_dir"] = None
    elif isinstance(models, Path):
        updates["models_dir"] = models
    if rules_dir is not None:
        updates["rules_dir"] = rules_dir
    if ip_intel is not None:
        updates["ip_intel_dir"] = ip_intel
    if allowlist is not None:
        updates["allowlist"] = allowlist
    return s.model_copy(update=updates)


def build_engine(
    rules_dir: Path | None = None,
    ip_intel: Path | None = None,
    allowlist: Path | None = None,
    models: Path | bool = True,
) -> Engine:
    """An engine from settings (env ``DETECTOR_*``) with command-line overrides.

    ``models``: True (default) loads ``settings.models_dir``; False runs rules only; a path overrides.
    """
    from detector.detect.allowlist import AllowList
    from detector.detect.models.runtime import ModelSet
    from detector.detect.rules import load_rules
    from detector.engine import Engine
    from detector.enrich.ipintel import IpIntel
    from detector.window.features import CATALOGUES

    s = _settings(rules_dir, ip_intel, allowlist, models)
    rules = load_rules(s.rules_dir, CATALOGUES)
    intel = IpIntel.from_dir(s.ip_intel_dir) if s.ip_intel_dir else None
    model_set = ModelSet.load(s.models_dir) if s.models_dir is not None else ModelSet()
    return Engine(s, rules, intel, AllowList.load(s.allowlist), model_set)
