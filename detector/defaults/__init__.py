"""Defaults that ship inside the package: detection rules, ONNX models and an IP-intelligence snapshot.

``rules`` and ``models`` are links to the repository's top-level ``rules/`` and ``models/`` folders (the
one editable copy); building a wheel copies their files in, so an installed ``detector`` finds them with
``importlib.resources`` from any directory. ``ip_intel`` is a compact subset of the public lists (see its
``README.md`` and ``scripts/make_ip_snapshot.py``). Operator folders (settings, ``--rules`` ...) override
every one of them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The word that selects the packaged IP-intelligence snapshot (``--ip-intel default``,
#: ``DETECTOR_IP_INTEL_DIR=default``); a folder of that name is written ``./default``.
DEFAULT_WORD = "default"


def _path(name: str) -> Path:
    """The packaged folder ``name`` as a file-system path (the package is always installed unzipped)."""
    return Path(str(resources.files(__name__).joinpath(name)))


def rules_dir() -> Path:
    """The packaged rule files."""
    return _path("rules")


def models_dir() -> Path:
    """The packaged ONNX models, manifests and model cards."""
    return _path("models")


def ip_intel_dir() -> Path:
    """The packaged IP-intelligence snapshot (hosting/VPN ranges; licences and sources beside them)."""
    return _path("ip_intel")


def resolve_ip_intel(value: Path | str | None) -> Path | None:
    """``value`` with :data:`DEFAULT_WORD` replaced by the packaged snapshot; None stays None."""
    if value is None:
        return None
    return ip_intel_dir() if str(value) == DEFAULT_WORD else Path(value)
