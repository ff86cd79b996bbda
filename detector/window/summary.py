"""The account stage's per-tick summary: what the cluster stage's population work reads of each account
(issue 13, round 17), so that it could fold summaries instead of decoding and enriching every event.

What ``Engine(stage="cluster")`` reads of the window state (``engine.py``, ``detect/context.py``,
``window/features.py``, ``window/samples.py``, ``window/link.py``): the buckets (cluster features,
``accused``), the templates (the room test's ``room_templates``), the sheet rows (``wide_texts``), the
opener rows (the cluster axis and the team test), the accounts table (who is live, sign-up times, orgs),
the key table as it stood at each tick (``KeyTimeline``: the link graph, the rooms, the teams), and the
models' first uses (the ``models`` context kind). Every one of them is a fold of one account's own
events, except the gaps in the buckets (they need the account's previous event: the account stage has
it) and the model table (a minimum over accounts: each account's first and last use per tick, the
cluster stage takes the minimum).

One ``AccountSummary`` holds, for one tick (``tick_end``) and the accounts whose events that tick
folded, exactly the rows ``WindowState.add`` folded for them, with the account id in place of the
state's codes: an account stage's ``SummarizingState`` records them as it folds (no second pass over
the events), and ``apply_summary`` folds them into a cluster stage's state the way ``add`` folds events.
``watermark`` is the newest event time among the tick's folded events (merged over the stages: the time
the single engine gives the tick's verdicts, its ``detected``); ``tick_end`` is the stage's progress:
it has closed every tick through it.

Not in it: the request-id hashes (de-duplication stays in the account stage, which owns every event
of its accounts; a request id repeated under two accounts of two shards is counted twice, where one
engine counts it once) and no prompt text (the sheet and opener rows hold the 64-bit text hashes the
state already holds).

Bytes: like ``PopulationContext`` (``window/context.py``): a header (magic, version, ``tick_end`` and
``watermark`` in epoch microseconds) and one Arrow IPC stream per kind, read back by pyarrow, validated
and checked against its schema before polars sees it; damaged bytes give ``ValueError``. Since round 19
its kinds are decoded under the context's decoded-bytes budget (``framing.read_ipc``, ``decoded_limit``:
each batch charged what its metadata says it decodes to before any is decoded), so a compressed bomb on
a summaries topic is refused (``OverBudget``) as one on the contexts topic is.
"""

from __future__ import annotations

import io
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, partial

import polars as pl
import pyarrow as pa

from detector.schema import UTC_US, make_schema
from detector.window.compact import assign, fit_rows, rows_of
from detector.window.framing import Budget, budget_of, read_frames, read_ipc, write_frames
from detector.window.hashspace import SIMHASH
from detector.window.keycodes import add_key_uses
from detector.window.openers import OPENER_SCHEMA, OPENER_STORE
from detector.window.sheets import SHEET_SCHEMA, SHEET_STORE
from detector.window.state import WindowState
from detector.window.tables import (
    ACCOUNT_AGGS,
    ACCOUNT_SCHEMA,
    BUCKET_SCHEMA,
    BUCKET_STORE,
    KEY_SCHEMA,
    MODEL_SCHEMA,
    TEMPLATE_SCHEMA,
    TEMPLATE_STORE,
)

_MAGIC = b"DASM"
#: 2 since round 22: the sheet and opener rows say their sample's hash space (``window/hashspace.py``)
_VERSION = 2
_HEADER = struct.Struct(">4sBqqH")  # magic, version, tick_end, watermark (epoch us), number of kinds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: each account's first and last use of each model in the tick (the cluster stage takes the minimum)
MODEL_USE_SCHEMA = make_schema({"account_id": pl.String, **MODEL_SCHEMA})
#: The kinds, their schemas (what readers of the state get: the account id, 32-bit counts), in order.
KINDS: dict[str, pl.Schema] = {
    "buckets": BUCKET_SCHEMA,
    "templates": TEMPLATE_SCHEMA,
    "sheets": SHEET_SCHEMA,
    "openers": OPENER_SCHEMA,
    "accounts": ACCOUNT_SCHEMA,
    "keys": KEY_SCHEMA,
    "models": MODEL_USE_SCHEMA,
}
#: the state tables whose new rows a fold appends, and their stored layouts
_APPENDED = {"buckets": BUCKET_SCHEMA, "templates": TEMPLATE_SCHEMA, "sheets": SHEET_SCHEMA}
_APPENDED |= {"openers": OPENER_SCHEMA}
#: A version 1 record's kinds (before round 22): no hash space, its samples read as texts, as then.
_KINDS_V1 = {n: pl.Schema({c: d for c, d in s.items() if c != SIMHASH}) for n, s in KINDS.items()}


@dataclass(frozen=True)
class AccountSummary:
    """One tick's folded rows of some accounts (module docstring); one account's in a keyed record."""

    tick_end: datetime
    watermark: datetime
    buckets: pl.DataFrame
    templates: pl.DataFrame
    sheets: pl.DataFrame
    openers: pl.DataFrame
    accounts: pl.DataFrame
    keys: pl.DataFrame
    models: pl.DataFrame

    def frames(self) -> dict[str, pl.DataFrame]:
        return {name: getattr(self, name) for name in KINDS}

    def rows(self) -> int:
        """Rows over every kind."""
        return sum(f.height for f in self.frames().values())

    def per_account(self) -> dict[str, AccountSummary]:
        """The record split by account (a topic keyed by account id); ``merged`` puts them together."""
        parts: dict[str, dict[str, pl.DataFrame]] = {}
        for name, frame in self.frames().items():
            for (account,), rows in frame.partition_by("account_id", as_dict=True).items():
                parts.setdefault(str(account), {})[name] = rows
        empty = {n: pl.DataFrame(schema=s) for n, s in KINDS.items()}
        return {
            a: AccountSummary(self.tick_end, self.watermark, **(empty | kinds)) for a, kinds in parts.items()
        }

    @classmethod
    def merged(cls, parts: list[AccountSummary]) -> AccountSummary:
        """Records of one tick as one (the latest watermark); rows in the order given."""
        tick = {p.tick_end for p in parts}
        if len(tick) != 1:
            raise ValueError(f"account summary: merging records of ticks {sorted(tick)}")
        kinds = {
            n: pl.concat([pl.DataFrame(schema=s), *(getattr(p, n) for p in parts)]) for n, s in KINDS.items()
        }
        return cls(tick.pop(), max(p.watermark for p in parts), **kinds)

    def to_bytes(self) -> bytes:
        """The record as bytes (``from_bytes`` reads them back)."""
        out = io.BytesIO()
        tick, mark = ((t - _EPOCH) // timedelta(microseconds=1) for t in (self.tick_end, self.watermark))
        out.write(_HEADER.pack(_MAGIC, _VERSION, tick, mark, len(KINDS)))
        write_frames(out, ((name, _to_wire(frame)) for name, frame in self.frames().items()))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, max_decoded: int | Budget | None = None) -> AccountSummary:
        """A record written by ``to_bytes``; ``ValueError`` naming what is wrong with any other bytes
        (``OverBudget`` when its kinds would decode to over ``max_decoded`` bytes, by default
        ``framing.decoded_limit`` of its size: a topic's record is hostile bytes, as a context is)."""
        view = memoryview(data)
        if len(view) < _HEADER.size:
            raise ValueError("account summary: too short for its header")
        magic, version, tick, mark, n = _HEADER.unpack_from(view)
        if magic != _MAGIC or version not in (1, _VERSION):
            raise ValueError(f"account summary: not a version 1 or {_VERSION} summary")
        budget = budget_of(data, max_decoded, "account summary")
        read = partial(_read_kind, budget=budget, version=version)
        frames = read_frames(view, _HEADER.size, n, KINDS, "account summary", read)
        try:
            tick_end, watermark = (_EPOCH + timedelta(microseconds=t) for t in (tick, mark))
        except OverflowError as exc:
            raise ValueError("account summary: a time out of range") from exc
        return cls(tick_end, watermark, **frames)


def _read_kind(name: str, raw: bytes, budget: Budget, version: int = _VERSION) -> pl.DataFrame:
    """One kind's Arrow IPC stream, read by pyarrow under the record's decoded-bytes ``budget``
    (``framing.read_ipc``; ``context._read_kind`` says why not polars); a version 1 record's samples
    as texts (``SIMHASH`` false)."""
    schema = KINDS[name] if version == _VERSION else _KINDS_V1[name]
    table = read_ipc(raw, _arrow_schema(name, version), budget, f"account summary: kind {name!r}")
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame) or frame.schema != _to_wire(pl.DataFrame(schema=schema)).schema:
        raise ValueError(f"account summary: kind {name!r} does not read back as {dict(schema)}")
    if SIMHASH in KINDS[name] and SIMHASH not in schema:
        frame = frame.with_columns(pl.lit(False).alias(SIMHASH))
    return _from_wire(frame, KINDS[name])


#: Arrow has no 128-bit integer (the buckets' squared gap sums): such a column travels as two, its high
#: 64 bits (signed) and its low 64 bits
_HI, _LO = "{}__hi", "{}__lo"


def _to_wire(frame: pl.DataFrame) -> pl.DataFrame:
    wide = [c for c, d in frame.schema.items() if d == pl.Int128]
    return frame.with_columns(
        *((pl.col(c) // 2**64).cast(pl.Int64).alias(_HI.format(c)) for c in wide),
        *((pl.col(c) % 2**64).cast(pl.UInt64).alias(_LO.format(c)) for c in wide),
    ).drop(wide)


def _from_wire(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    wide = [c for c, d in schema.items() if d == pl.Int128]
    joined = [
        (pl.col(_HI.format(c)).cast(pl.Int128) * 2**64 + pl.col(_LO.format(c)).cast(pl.Int128)).alias(c)
        for c in wide
    ]
    return frame.with_columns(joined).select(schema.keys())


@cache
def _arrow_schema(name: str, version: int = _VERSION) -> pa.Schema:
    out = io.BytesIO()
    schema = KINDS[name] if version == _VERSION else _KINDS_V1[name]
    _to_wire(pl.DataFrame(schema=schema)).write_ipc_stream(out, compression="zstd")
    return pa.ipc.open_stream(pa.BufferReader(out.getvalue())).schema.remove_metadata()


class SummarizingState(WindowState):
    """An account stage's window state that also records, per tick, what each fold added
    (``summaries``, in tick order); ``spent``: the engine thread's CPU seconds the recording took."""

    def __init__(self) -> None:
        super().__init__()
        self.summaries: list[AccountSummary] = []
        self.spent = 0.0
        self._heights: dict[str, int] | None = None
        self._tails: dict[str, pl.DataFrame] = {}

    def compact(self) -> None:
        if self._heights is not None:  # inside ``add``: take the fold's rows before they are merged
            self._tails = {t: getattr(self, t).slice(h) for t, h in self._heights.items()}
        super().compact()

    def add(self, events: pl.DataFrame, bucket_every: timedelta, signup_burst: timedelta) -> pl.DataFrame:
        c0 = time.thread_time()
        self._heights, self._tails = {t: getattr(self, t).height for t in _APPENDED}, {}
        c1 = time.thread_time()
        log = super().add(events, bucket_every, signup_burst)
        c2 = time.thread_time()
        if events.height:
            tails = self._tails or {t: getattr(self, t).slice(h) for t, h in self._heights.items()}
            self.summaries += _summaries(events, tails, self.ids, log, bucket_every)
        self._heights, self._tails = None, {}
        self.spent += (c1 - c0) + (time.thread_time() - c2)
        return log


def _summaries(
    events: pl.DataFrame,
    tails: dict[str, pl.DataFrame],
    ids: pl.DataFrame,
    log: pl.DataFrame,
    bucket_every: timedelta,
) -> list[AccountSummary]:
    """The fold's rows, per ``_tick`` of ``events``: a bucket's rows belong to the tick its events
    closed in, the later of the bucket's end and the fold's first tick (how ``_tick`` is computed)."""
    first = events["_tick"].min()
    tick_of = pl.max_horizontal(pl.col("bucket") + pl.lit(bucket_every), pl.lit(first, dtype=UTC_US))
    rows = {
        t: rows_of(f, ids, _APPENDED[t], None, None, None).with_columns(tick_of.alias("_tick"))
        for t, f in tails.items()
    }
    rows["accounts"] = events.group_by("account_id", "_tick").agg(*ACCOUNT_AGGS)
    rows["keys"] = log
    rows["models"] = events.group_by("account_id", "model", "_tick").agg(
        pl.col("ts").min().alias("first_seen"), pl.col("ts").max().alias("last_seen")
    )
    marks = dict(events.group_by("_tick").agg(pl.col("ts").max()).iter_rows())
    split = {n: dict(f.partition_by("_tick", as_dict=True, include_key=False)) for n, f in rows.items()}
    out = []
    for (tick,) in sorted({k for parts in split.values() for k in parts}):
        kinds = {
            n: split[n].get((tick,), pl.DataFrame(schema=s)).select(s.keys()).cast(s)
            for n, s in KINDS.items()
        }
        out.append(AccountSummary(tick, marks[tick], **kinds))
    return out


def apply_summary(state: WindowState, s: AccountSummary) -> None:
    """Fold a summary into ``state`` the way ``WindowState.add`` folds the events it summarizes: rows
    appended under the state's codes, accounts re-aggregated, key uses merged, model uses minimized."""
    named = pl.concat([s.accounts["account_id"], s.buckets["account_id"]])
    if named.len() == 0:
        return
    state.ids, codes = assign(state.ids, named)
    state.buckets = pl.concat([state.buckets, fit_rows(s.buckets.join(codes, on="account_id"), BUCKET_STORE)])
    state.templates = pl.concat(
        [state.templates, fit_rows(s.templates.join(codes, on="account_id"), TEMPLATE_STORE)]
    )
    for name, store in (("sheets", SHEET_STORE), ("openers", OPENER_STORE)):
        coded = getattr(s, name).join(codes, on="account_id").select(store.keys()).cast(store)
        setattr(state, name, pl.concat([getattr(state, name), coded]))
    seen_now = pl.col("account_id").is_in(s.accounts["account_id"].implode())
    updated = (  # as ``WindowState.add`` re-aggregates the accounts of a fold
        pl.concat([state.accounts.filter(seen_now), s.accounts])
        .group_by("account_id", maintain_order=True)
        .agg(
            pl.col("first_seen").min(),
            pl.col("last_seen").max(),
            *(pl.col(c).drop_nulls().last() for c in ("created_at", "tier", "org_id", "verified")),
        )
    )
    state.accounts = pl.concat([state.accounts.filter(~seen_now), updated]).sort("account_id")
    state.ids, state.key_names, state.keys = add_key_uses(state.ids, state.key_names, state.keys, s.keys)
    if s.models.height:
        first = s.models["first_seen"].min()  # the stream's start: the earliest use of any shard's
        assert isinstance(first, datetime)
        state.stream_start = first if state.stream_start is None else min(state.stream_start, first)
        state.models = (
            pl.concat([state.models, s.models.select(MODEL_SCHEMA.keys())])
            .group_by("model")
            .agg(pl.col("first_seen").min(), pl.col("last_seen").max())
            .sort("model")
        )
