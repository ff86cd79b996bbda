"""Engine checkpoints: window state, open alert episodes, the tick clock and buffered events, atomically.

Layout under a root folder::

    root/CURRENT                -> name of the live checkpoint folder (replaced atomically with os.replace)
    root/ckpt-000042-9f2c1a7b/  -> state tables (Parquet), pending.parquet, book.json, meta.json

A checkpoint is written to a fresh folder, fsynced, and only then does ``CURRENT`` point at it, so a
crash at any moment leaves either the old or the new checkpoint whole, never a mix. ``extra`` is
stored in the same ``meta.json``: the daemon puts its consumed offsets there, so offsets and the state
that counted them can never disagree. Folder names carry a random suffix, and after the switch only
folders with a lower sequence number are removed, so two writers racing on one root (an owner being
fenced and its successor) never delete each other's folder half-written.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from detector.alert.verdict import Episode
from detector.contracts import Reason, Severity
from detector.engine import Engine, EngineClock, EngineStats
from detector.errors import DetectorError
from detector.window.state import WindowState

FORMAT = 1


class CheckpointError(DetectorError, ValueError):
    """A checkpoint this build cannot read (the message names the folder)."""


# ---------------------------------------------------------------------------------------------------
# The engine's own parts, JSON-ready: its clock, its counters, its buffered events.


def stats_to_dict(stats: EngineStats) -> dict[str, Any]:
    """The engine's counters, JSON-ready."""
    return {f.name: dict(v) if isinstance(v := getattr(stats, f.name), Counter) else v for f in fields(stats)}


def stats_from_dict(data: dict[str, Any]) -> EngineStats:
    """Inverse of ``stats_to_dict`` (missing fields start at zero)."""
    out = EngineStats()
    for f in fields(EngineStats):
        if f.name in data:
            value = data[f.name]
            setattr(out, f.name, Counter(value) if isinstance(getattr(out, f.name), Counter) else value)
    return out


def pending_events(engine: Engine) -> pl.DataFrame | None:
    """Buffered events of ticks not yet closed."""
    pending = engine.clock.pending
    if not pending:
        return None
    return pl.concat(pending, how="vertical_relaxed")


def clock_state(engine: Engine) -> dict[str, Any]:
    """The event-time clock, per-period bookkeeping and counters, JSON-ready."""
    c = engine.clock
    touched = pl.concat(c.touched).unique().sort().to_list() if c.touched else []
    return {
        "max_ts": c.max_ts.isoformat() if c.max_ts else None,
        "tick_end": c.tick_end.isoformat() if c.tick_end else None,
        "touched_since_clusters": touched,
        "last_closed": c.last_closed.isoformat() if c.last_closed else None,
        "stats": stats_to_dict(engine.stats),
    }


def restore_clock(engine: Engine, clock: dict[str, Any], pending: pl.DataFrame | None) -> None:
    """Inverse of ``clock_state`` plus ``pending_events``."""
    last = clock.get("last_closed")
    touched = clock.get("touched_since_clusters") or []
    engine.clock = EngineClock(
        max_ts=datetime.fromisoformat(clock["max_ts"]) if clock["max_ts"] else None,
        tick_end=datetime.fromisoformat(clock["tick_end"]) if clock["tick_end"] else None,
        last_closed=datetime.fromisoformat(last) if last else None,
        touched=[pl.Series("account_id", touched, dtype=pl.String)] if touched else [],
        pending=[pending] if pending is not None and pending.height else [],
    )
    engine.stats = stats_from_dict(clock.get("stats") or {})


# ---------------------------------------------------------------------------------------------------
# The checkpoint folder: write, switch, read.


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current(root: Path) -> Path | None:
    pointer = root / "CURRENT"
    if not pointer.exists():
        return None
    name = pointer.read_text().strip()
    folder = root / name
    return folder if folder.is_dir() else None


def save_engine(engine: Engine, root: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a complete checkpoint of ``engine`` (and ``extra``) and make it current."""
    root.mkdir(parents=True, exist_ok=True)
    live = _current(root)
    seq = _seq(live) + 1 if live else 1
    folder = root / f"ckpt-{seq:06d}-{secrets.token_hex(4)}"
    engine.state.save(folder)
    pending = pending_events(engine)
    if pending is not None:
        pending.write_parquet(folder / "pending.parquet")
    book = [
        {
            "kind": k[0],
            "subject": k[1],
            "alert_id": ep.alert_id,
            "revision": ep.revision,
            "severity": ep.severity,
            "accounts": sorted(ep.accounts),
            "first_event_ts": ep.first_event_ts.isoformat(),
            "detected_event_ts": ep.detected_event_ts.isoformat(),
            "last_hit": ep.last_hit.isoformat(),
            "reasons": [r.model_dump() for r in ep.reasons],
            "campaign_type": ep.campaign_type,
            "campaign_rank": ep.campaign_rank,
            "score": ep.score,
        }
        for k, ep in sorted(engine.book.episodes.items())
    ]
    (folder / "book.json").write_text(json.dumps(book))
    meta = {"format": FORMAT, "clock": clock_state(engine), "extra": extra or {}}
    (folder / "meta.json").write_text(json.dumps(meta, sort_keys=True))
    for f in folder.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(folder)
    tmp = root / "CURRENT.tmp"
    tmp.write_text(folder.name)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, root / "CURRENT")
    _fsync_dir(root)
    for old in root.glob("ckpt-*"):
        if old != folder and _seq(old) < seq:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def _seq(folder: Path) -> int:
    """The sequence number in ``ckpt-<seq>-<suffix>`` (``ckpt-<seq>`` from older builds)."""
    try:
        return int(folder.name.split("-")[1])
    except (IndexError, ValueError):
        return 0


def load_engine(engine: Engine, root: Path) -> dict[str, Any] | None:
    """Restore ``engine`` from the current checkpoint under ``root``; return its ``extra`` (None: none)."""
    folder = _current(root)
    if folder is None:
        return None
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {folder} has format {meta.get('format')}, this build reads {FORMAT}",
        )
    engine.state = WindowState.load(folder)
    pending_path = folder / "pending.parquet"
    pending = pl.read_parquet(pending_path) if pending_path.exists() else None
    engine.book.episodes = {
        (e["kind"], e["subject"]): Episode(
            e["alert_id"],
            e["revision"],
            Severity(e["severity"]),
            frozenset(e["accounts"]),
            datetime.fromisoformat(e["first_event_ts"]),
            datetime.fromisoformat(e["detected_event_ts"]),
            # checkpoints from before episodes expired carry no last verdict time: count them as seen
            # at the checkpoint's last closed tick, so restoring never closes a live episode early
            datetime.fromisoformat(
                e.get("last_hit") or meta["clock"].get("last_closed") or e["detected_event_ts"]
            ),
            tuple(Reason.model_validate(r) for r in e.get("reasons", [])),
            e.get("campaign_type"),
            e.get("campaign_rank", 0),
            e.get("score", 0.0),
        )
        for e in json.loads((folder / "book.json").read_text())
    }
    restore_clock(engine, meta["clock"], pending)
    extra: dict[str, Any] = meta.get("extra", {})
    return extra


# ------------------------------------------------------------------------------------------ the folder
# What the streaming daemon reads and writes around a checkpoint: the ``CURRENT`` pointer, and its
# stream position (input topic, per-partition offsets, owner epoch) kept in ``meta.json``'s ``extra``.


@dataclass(frozen=True)
class StreamPosition:
    """Where each input partition resumes after this checkpoint, and which owner wrote it."""

    topic: str
    offsets: dict[int, int]
    owner_epoch: int = 0
    group_generation: int = -1
    saved_at: str = ""

    def to_extra(self) -> dict[str, Any]:
        """The ``extra`` stored with the checkpoint (offsets keyed by partition as text, in order)."""
        return {
            "topic": self.topic,
            "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
            "owner_epoch": self.owner_epoch,
            "group_generation": self.group_generation,
            "saved_at": self.saved_at,
        }

    @staticmethod
    def from_extra(extra: dict[str, Any], topic: str) -> StreamPosition:
        """The position in ``extra``; offsets only when it was written for ``topic`` (else none)."""
        offsets = extra.get("offsets", {}) if extra.get("topic") == topic else {}
        return StreamPosition(
            topic,
            {int(p): int(o) for p, o in offsets.items()},
            int(extra.get("owner_epoch", 0)),
            int(extra.get("group_generation", -1)),
            str(extra.get("saved_at", "")),
        )


class CheckpointFolder:
    """The checkpoint root a daemon (or several replicas) shares: pointer, current extra, save, load."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def current_name(self) -> str | None:
        """The folder name ``CURRENT`` points at (None: no checkpoint yet)."""
        pointer = self.root / "CURRENT"
        return pointer.read_text().strip() if pointer.exists() else None

    def current_extra(self) -> dict[str, Any]:
        """The ``extra`` of the current checkpoint ({} when there is none)."""
        return current_extra(self.root)

    def save(self, engine: Engine, extra: dict[str, Any]) -> Path:
        """Write a checkpoint and make it current (``save_engine``)."""
        return save_engine(engine, self.root, extra)

    def load(self, engine: Engine) -> dict[str, Any] | None:
        """Restore ``engine`` from the current checkpoint (``load_engine``)."""
        return load_engine(engine, self.root)


def current_extra(root: Path) -> dict[str, Any]:
    """The ``extra`` of the current checkpoint under ``root`` ({} when there is none)."""
    folder = _current(root)
    if folder is None or not (folder / "meta.json").exists():
        return {}
    extra: dict[str, Any] = json.loads((folder / "meta.json").read_text()).get("extra", {})
    return extra
