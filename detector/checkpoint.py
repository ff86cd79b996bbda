"""Engine checkpoints: window state, open alert episodes, the tick clock and buffered events, atomically.

What goes into a checkpoint folder is written here: the state tables (Parquet), ``pending.parquet``
(buffered events, when any), ``book.json`` (open episodes) and ``meta.json`` (format, clock, counters
and ``extra``). How the folder is made, proven and found again is ``detector.statedir``: written to a
temporary folder with a manifest of sizes and SHA-256 hashes, renamed, then made current by switching
``CURRENT``; the previous checkpoint is kept, and loading takes the newest folder that verifies,
falling back (one loud log line, ``on_fallback``) when the current one does not. ``extra`` is stored
in ``meta.json``: the daemon puts its consumed offsets there, so offsets and the state that counted
them can never disagree.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from detector.alert.verdict import Episode
from detector.contracts import Reason, Severity
from detector.detect.runaway import demotions_state, restore_demotions
from detector.engine import Engine, EngineClock, EngineStats
from detector.errors import ConfigError
from detector.statedir import (
    CheckpointError,
    CheckpointWriteError,
    NoGoodCheckpoint,
    choose,
    pointer,
    reset,
    set_aside,
    write_folder,
)
from detector.window.state import WindowState

if TYPE_CHECKING:
    from detector.enrich.prompt.hashing import TextKey

__all__ = ["CheckpointError", "CheckpointWriteError", "NoGoodCheckpoint"]

log = logging.getLogger("detector.checkpoint")

FORMAT = 1
#: ``meta.json`` key of the text key's check (``TextKey.check``), present only when a key is set.
TEXT_KEY_CHECK = "text_key_check"


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
    """Buffered events of ticks not yet closed, each request id once (a partition read again buffers
    a second copy of what is still pending; the tick close would drop it)."""
    pending = engine.clock.pending
    if not pending:
        return None
    events = pl.concat(pending, how="vertical_relaxed")
    return events.unique(subset="request_id", keep="first", maintain_order=True)


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
        "demoted": demotions_state(engine.rules, engine.demoted),
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
    engine.demoted = restore_demotions(engine.rules, clock.get("demoted") or {})


# ---------------------------------------------------------------------------------------------------
# The checkpoint folder: write, switch, read.


def _fill(engine: Engine, extra: dict[str, Any] | None) -> Callable[[Path], None]:
    """Write ``engine`` (and ``extra``) into a checkpoint folder (``statedir.write_folder``)."""

    def fill(folder: Path) -> None:
        engine.state.save(folder)
        pending = pending_events(engine)
        if pending is not None:
            pending.write_parquet(folder / "pending.parquet")
        (folder / "book.json").write_text(json.dumps(_book(engine)))
        meta = {"format": FORMAT, "clock": clock_state(engine), "extra": extra or {}}
        if engine.text_key is not None:  # which key ordered the samples (a check, never the key)
            meta[TEXT_KEY_CHECK] = engine.text_key.check
        (folder / "meta.json").write_text(json.dumps(meta, sort_keys=True))

    return fill


def _book(engine: Engine) -> list[dict[str, Any]]:
    return [
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


def _same_text_key(key: TextKey | None, stored: str | None, folder: Path) -> None:
    """Refuse a checkpoint whose samples were ordered under another text key (or none): the sheet and
    opener samples keep each bucket's smallest ``text_fp``, and two keys' orders mixed in one window
    would read as different texts. Restoring it would be silently wrong; a ``ConfigError`` names the
    variable (exit 2): set the key the state was written with, or start over."""
    mine = key.check if key is not None else None
    if stored != mine:
        how = (
            "under another text key"
            if stored and mine
            else ("under a text key, and none is set" if stored else "without a text key, and one is set")
        )
        raise ConfigError(
            f"checkpoint {folder.name} in {folder.parent} was written {how}; set the key it was written "
            "with (or none), or start over: move the state directory aside, then "
            "`detector run --reset-state` "
            "(docs/operations.md#a-secret-key-on-the-text-hash)",
            "DETECTOR_TEXT_KEY",
        )


def refuse_other_text_key(root: Path, key: TextKey | None) -> None:
    """At start, before the daemon joins its group: ``load_engine``'s refusal of another text key, on
    the newest checkpoint whose ``meta.json`` verifies (none, or unreadable: the load decides later). A
    replica under the wrong key stops now, not at the failover it stands by for."""
    folder = choose(root, only=("meta.json",)).folder
    if folder is None:
        return
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return
    _same_text_key(key, meta.get(TEXT_KEY_CHECK), folder)


def save_engine(engine: Engine, root: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a complete checkpoint of ``engine`` (and ``extra``) and make it current.

    Raises ``CheckpointWriteError`` (no folder left behind) when anything on the way fails.
    """
    return write_folder(root, _fill(engine, extra))


def _chosen(
    root: Path, on_fallback: Callable[[], None] | None, only: tuple[str, ...] | None = None
) -> Path | None:
    """The folder to read under ``root`` (None: no state at all); a fallback is logged, counted and its
    damaged folders set aside; no good folder with state present raises ``NoGoodCheckpoint``."""
    choice = choose(root, only)
    if choice.folder is None:
        if choice.present:
            problems = "; ".join(f"{n}: {p}" for n, p in choice.skipped) or "none found"
            if any(p == "no manifest" for _, p in choice.skipped):
                problems += (
                    " (written by a build before manifests? "
                    "docs/operations.md#checkpoints-that-prove-themselves)"
                )
            raise NoGoodCheckpoint(
                f"no checkpoint verifies ({problems}); refusing to start from the beginning of the "
                "input. Restore the state directory from a backup, or start over with "
                "`detector run --reset-state` (docs/operations.md#state)",
                str(root),
            )
        return None
    if choice.skipped and only is None:
        aside = set_aside(root, [n for n, _ in choice.skipped])
        log.error(
            "checkpoint damaged; fell back to an older one (events since it are read again)",
            extra={
                "state_dir": str(root),
                "skipped": [f"{n}: {p}" for n, p in choice.skipped],
                "loaded": choice.folder.name,
                "set_aside": aside,
            },
        )
        if on_fallback is not None:
            on_fallback()
    return choice.folder


def load_engine(
    engine: Engine, root: Path, on_fallback: Callable[[], None] | None = None
) -> dict[str, Any] | None:
    """Restore ``engine`` from the newest checkpoint under ``root`` that verifies; return its ``extra``.

    None: ``root`` holds no state (a first start). A current checkpoint that does not verify falls
    back to the previous one (logged at error level, ``on_fallback`` called); with state present but
    no checkpoint that verifies, raises ``NoGoodCheckpoint``.
    """
    folder = _chosen(root, on_fallback)
    if folder is None:
        return None
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {folder} has format {meta.get('format')}, this build reads {FORMAT}",
        )
    _same_text_key(engine.text_key, meta.get(TEXT_KEY_CHECK), folder)
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
    """The checkpoint root a daemon (or several replicas) shares: pointer, current extra, save, load.

    ``on_fallback`` is called when a load falls back past a damaged checkpoint (the daemon counts it).
    """

    def __init__(self, root: Path, on_fallback: Callable[[], None] | None = None) -> None:
        self.root = root
        self.on_fallback = on_fallback

    def current_name(self) -> str | None:
        """The folder name ``CURRENT`` points at (None: no checkpoint yet)."""
        return pointer(self.root)

    def current_extra(self) -> dict[str, Any]:
        """The ``extra`` of the current checkpoint ({} when there is none)."""
        return current_extra(self.root)

    def save(self, engine: Engine, extra: dict[str, Any]) -> Path:
        """Write a checkpoint and make it current (``save_engine``)."""
        return save_engine(engine, self.root, extra)

    def load(self, engine: Engine) -> dict[str, Any] | None:
        """Restore ``engine`` from the newest good checkpoint (``load_engine``)."""
        return load_engine(engine, self.root, self.on_fallback)

    def check(self) -> bool:
        """Whether state exists here (False: a fresh directory); raises ``NoGoodCheckpoint`` when it
        does but no checkpoint verifies. Reads every checkpoint file it checks; changes nothing."""
        choice = choose(self.root)
        if choice.folder is None and choice.present:
            _chosen(self.root, None)  # raises, naming every problem
        return choice.present

    def reset(self) -> Path | None:
        """Move everything here aside (``--reset-state``); the folder it went to (None: was empty)."""
        return reset(self.root)


def current_extra(root: Path) -> dict[str, Any]:
    """The ``extra`` of the newest checkpoint under ``root`` whose ``meta.json`` verifies ({}: none).

    Cheap (one file hashed): the commit reads it for fencing before every write."""
    folder = choose(root, only=("meta.json",)).folder
    if folder is None:
        return {}
    try:
        extra: dict[str, Any] = json.loads((folder / "meta.json").read_text()).get("extra", {})
    except (OSError, ValueError):
        return {}
    return extra
