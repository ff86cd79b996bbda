"""The population context: what the account verdicts read about other accounts, as one object (issue 13).

In the two-stage split (docs/architecture.md, "The two-stage split") a partition-parallel account stage
sees only its own accounts; what its verdicts need of the population the single-owner cluster stage
computes at each closed tick from every account's summaries and publishes (a compacted topic keyed by
kind and key). The account stage reads the context as of the previous closed tick.
``EngineSettings.context_lag`` runs today's one engine that way: under it the sheet, room and seat tests
read the population only through a ``PopulationContext`` built per tick, handed through
``Observers.on_context`` (the publication: a test round-trips it through ``to_bytes``), plus the point's
own account's rows and keys.

Kinds held (round 15), each a frame of keys and the accounts they name:

- ``sheets``: the sheet test's (``window/sheets.py``: ``account_sheets``) texts held by at least
  ``sheet_min_accounts`` accounts in the window ``[as_of - long, as_of)``, with their holders: one row per
  (text_fp, account_id). ``text_fp`` is the 64-bit text hash the state already holds (keyed by the
  deployment's ``DETECTOR_TEXT_KEY`` when there is one); no prompt text is ever in it.
- ``rooms``: the room test's (``detect/room.py``: ``room_templates``) (template, venue) pairs a room
  explains, read from the key table as of ``as_of``.
- ``teams``: the seat test's (``detect/seat.py``: ``team_groups``) tool keys (``family|key``, a system
  prompt's or a template's fingerprint) whose holders a team explains, with those holders and whether
  the team is an established customer's (``established``; a group of new seats caps its seats at
  medium, an established one at low: round 15).
- ``new_seats`` (round 18): the lone-seat test's (``detect/lone.py``: ``new_seat_tools``) tool keys
  (``family|key``; round 19: and a router's sign-up half hours, ``signup|`` and the slot with its
  tenant's reseller id and org as JSON) that a group
  of new seats holds as of ``as_of``: at least two holders,
  ``team_new_seat_share`` or more of them opened within the month. Only those keys, not their holders:
  the account stage asks only whether its point's own tool keys are among them. None when read from a
  version 2 context (a cluster stage from before round 18): the test is not applied there.
- ``routers`` (round 18): the lone-seat test's (``detect/lone.py``: ``router_tenants``) reseller tenants
  that are established, verified routers as of ``as_of``, as (reseller id, the tenant's org): the account
  stage reads a point's own reseller id and org against them. None when read from a version 2 context.
- ``aged_slots`` (round 21): the aged seats' release's (``detect/aged.py``: ``aged_slots``) groups as of
  ``as_of``: per router tenant's sign-up half hour (``slot``: the ``signup`` key's JSON, reseller id, org
  and slot) and uncovered kind, the seats the router's trust covers that carry the kind and their pooled
  kind requests and requests, for the groups that release (``OTHER_SEAT`` seats, the harvest bars). Keys
  and counts, no holders: the account stage asks only about its point's own slot and the kinds its own
  row carries. None when read from a version 2 or 3 context (the release is not applied there).
- ``models`` (round 15, second part): every held model's first use by anyone before ``as_of``, with the
  stream's start on every row (one row with no model carries it when no model is held). The new-model
  flag is folded into the buckets at ingest, before the account verdicts, so this kind is published
  apart, before the fold (``Observers.on_models``; the other kinds' contexts carry it empty):
  ``new_model_flags`` reads it with the point's own account's first use in its tick.

The cluster stage's part, building it, is ``detect/context.py``.

Bytes: a short header (magic, version, ``as_of`` in epoch microseconds) and one Arrow IPC stream per
kind (polars writes it; no pickle), each read back by pyarrow, validated in full and checked against its
schema before polars sees it (polars' own reader aborts the process on some damaged lengths).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, partial

import polars as pl
import pyarrow as pa

from detector.schema import UTC_US, make_schema
from detector.settings import EngineSettings
from detector.window.framing import Budget, budget_of, read_frames, read_ipc, write_frames
from detector.window.sheets import HOLDER_SCHEMA
from detector.window.state import WindowState

_MAGIC = b"DPCX"
#: 4 (round 21): the ``aged_slots`` kind; 3 (round 18): the ``new_seats`` and ``routers`` kinds; 2 (round
#: 15): ``teams``' ``established``, ``models``
_VERSION = 4
#: The versions before that ``from_bytes`` reads too, each without the kinds added after it (read as None).
_COMPAT = 2
_HEADER = struct.Struct(">4sBqH")  # magic, version, as_of (epoch us), number of kinds
ROOM_SCHEMA = make_schema({"template": pl.String, "venue": pl.String})
TEAM_SCHEMA = make_schema({"tool": pl.String, "account_id": pl.String, "established": pl.Boolean})
NEW_SEAT_SCHEMA = make_schema({"tool": pl.String})
ROUTER_SCHEMA = make_schema({"reseller": pl.String, "org_id": pl.String})
AGED_SLOT_SCHEMA = make_schema(
    {"slot": pl.String, "kind": pl.String, "seats": pl.UInt32, "hits": pl.Float64, "requests": pl.Float64}
)
#: The kinds and their schemas, in the order they are written.
MODEL_CONTEXT_SCHEMA = make_schema({"model": pl.String, "first_seen": UTC_US, "stream_start": UTC_US})
KINDS: dict[str, pl.Schema] = {
    "sheets": HOLDER_SCHEMA,
    "rooms": ROOM_SCHEMA,
    "teams": TEAM_SCHEMA,
    "models": MODEL_CONTEXT_SCHEMA,
    "new_seats": NEW_SEAT_SCHEMA,
    "routers": ROUTER_SCHEMA,
    "aged_slots": AGED_SLOT_SCHEMA,
}
#: The version each kind came in (a context of an older version reads it as None).
_SINCE = {"new_seats": 3, "routers": 3, "aged_slots": 4}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Largest context record the stages send and fetch (``MAX_RECORD_BYTES`` of the contexts reader).
MAX_WIRE_BYTES = 64 << 20


@dataclass(frozen=True)
class PopulationContext:
    """What the account verdicts at the tick after ``as_of`` read about other accounts (module docstring)."""

    as_of: datetime
    #: (text_fp, account_id): the texts at least ``sheet_min_accounts`` held in [as_of - long, as_of)
    sheets: pl.DataFrame
    #: (template, venue): every template a room explains, from the key table as of ``as_of``
    rooms: pl.DataFrame
    #: (tool, account_id, established): the holders of every tool key (``family|key``) a team explains
    teams: pl.DataFrame
    #: (model, first_seen, stream_start): every held model's first use before as_of (published apart)
    models: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MODEL_CONTEXT_SCHEMA))
    #: (tool): every tool key a group of new seats holds as of as_of (None: a version 2 context's)
    new_seats: pl.DataFrame | None = field(default_factory=lambda: pl.DataFrame(schema=NEW_SEAT_SCHEMA))
    #: (reseller, org_id): the tenants that are established routers as of as_of (None: version 2's)
    routers: pl.DataFrame | None = field(default_factory=lambda: pl.DataFrame(schema=ROUTER_SCHEMA))
    #: (slot, kind, seats, hits, requests): the aged seats' groups that release as of as_of (None: a
    #: version 2 or 3 context's)
    aged_slots: pl.DataFrame | None = field(default_factory=lambda: pl.DataFrame(schema=AGED_SLOT_SCHEMA))

    @classmethod
    def of_models(cls, as_of: datetime, models: pl.DataFrame) -> PopulationContext:
        """The ``models`` kind alone (published before the fold; the other kinds empty)."""
        empty = {n: pl.DataFrame(schema=KINDS[n]) for n in KINDS if n != "models"}
        return cls(as_of, **empty, models=models)

    def rows(self) -> dict[str, int]:
        """Rows per kind (a kind the context does not carry: 0)."""
        return {name: 0 if (f := getattr(self, name)) is None else f.height for name in KINDS}

    def to_bytes(self) -> bytes:
        """The context as bytes for a compacted topic (``from_bytes`` reads them back); a context read
        from older bytes (the kinds after its version None) is written as that version again."""
        out = io.BytesIO()
        as_of = (self.as_of - _EPOCH) // timedelta(microseconds=1)
        if (self.new_seats is None) != (self.routers is None):
            raise ValueError("population context: new_seats and routers are carried together or not at all")
        if self.new_seats is None and self.aged_slots is not None:
            raise ValueError("population context: aged_slots is carried only with new_seats and routers")
        carried = [_SINCE[n] for n in _SINCE if getattr(self, n) is not None]
        version = max(carried, default=_COMPAT)
        names = _kinds(version)
        out.write(_HEADER.pack(_MAGIC, version, as_of, len(names)))
        write_frames(out, ((name, getattr(self, name)) for name in names))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, max_decoded: int | Budget | None = None) -> PopulationContext:
        """A context written by ``to_bytes``; ``ValueError`` naming what is wrong with any other bytes
        (``OverBudget`` when its kinds would decode to over ``max_decoded`` bytes, by default
        ``decoded_limit``: the batch past it is never decoded). A ``Budget`` given is charged (its
        ``used``: what the context decodes to)."""
        view = memoryview(data)
        if len(view) < _HEADER.size:
            raise ValueError("population context: too short for its header")
        magic, version, as_of, n = _HEADER.unpack_from(view)
        if magic != _MAGIC or not _COMPAT <= version <= _VERSION:
            raise ValueError(f"population context: not a version {_COMPAT} to {_VERSION} context")
        budget = budget_of(data, max_decoded, "population context")
        frames = read_frames(
            view, _HEADER.size, n, _kinds(version), "population context", partial(_read_kind, budget=budget)
        )
        try:
            when = _EPOCH + timedelta(microseconds=as_of)
        except OverflowError as exc:
            raise ValueError("population context: as_of out of range") from exc
        if version == _COMPAT:  # the kinds after its version: None
            return cls(when, new_seats=None, routers=None, aged_slots=None, **frames)
        if version < _VERSION:
            return cls(when, aged_slots=None, **frames)
        return cls(when, **frames)


def _kinds(version: int) -> list[str]:
    """The kinds a context of ``version`` carries, in the order they are written."""
    return [n for n in KINDS if _SINCE.get(n, _COMPAT) <= version]


def _read_kind(name: str, raw: bytes, budget: Budget) -> pl.DataFrame:
    """One kind's Arrow IPC stream, read and checked by pyarrow before polars sees it: polars' own IPC
    reader trusts the lengths in the bytes and aborts the process on damaged ones (an allocation of
    9e18 bytes), where pyarrow returns an error. The schema is checked before any batch is read, each
    batch is charged to the context's decoded-bytes ``budget`` before it is decompressed (round 18: a
    small record of identical rows decodes to a hundred times its size and more), and the full
    validation (offsets, UTF-8) leaves polars only well-formed columns of the kind's types."""
    table = read_ipc(raw, _arrow_schema(name), budget, f"population context: kind {name!r}")
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame) or frame.schema != KINDS[name]:
        raise ValueError(f"population context: kind {name!r} does not read back as {dict(KINDS[name])}")
    return frame


@cache
def _arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema ``to_bytes`` writes for kind ``name`` (read back by pyarrow)."""
    out = io.BytesIO()
    pl.DataFrame(schema=KINDS[name]).write_ipc_stream(out, compression="zstd")
    return pa.ipc.open_stream(pa.BufferReader(out.getvalue())).schema.remove_metadata()


#: The publication between the stages: handed each tick's context, gives what the account stage reads
#: (``Observers.on_context``; a test round-trips it through bytes, a benchmark measures it).
Relay = Callable[[PopulationContext], PopulationContext]
#: Each tick's context, keyed by the tick whose points read it (``as_of``: a lag before it).
Contexts = dict[datetime, PopulationContext]


class Published:
    """An account stage's relay (``runtime/shards.py``): the contexts another stage published, as bytes
    by ``as_of``. The engine asks it by time instead of building a context from its own accounts."""

    def __init__(self, book: dict[datetime, bytes]) -> None:
        self.book = book

    def at(self, as_of: datetime) -> PopulationContext:
        """The context published as of ``as_of``; ``ValueError`` when none was (the account stage is
        ahead of the cluster stage: wait for it, never read a population of one's own accounts)."""
        data = self.book.get(as_of)
        if data is None:
            raise ValueError(f"population context: none published as of {as_of.isoformat()}")
        return PopulationContext.from_bytes(data)

    def __call__(self, ctx: PopulationContext) -> PopulationContext:
        return self.at(ctx.as_of)


def sheet_holders(contexts: Contexts) -> pl.DataFrame:
    """The contexts' sheets as ``account_sheets`` reads them: (tick_end, ``HOLDER_SCHEMA``), ``tick_end``
    the tick whose points read each."""
    empty = pl.DataFrame(schema={**HOLDER_SCHEMA, "tick_end": UTC_US})
    frames = [c.sheets.with_columns(pl.lit(t, UTC_US).alias("tick_end")) for t, c in contexts.items()]
    return pl.concat([empty, *frames])


def model_contexts(
    state: WindowState, events: pl.DataFrame, ticks: list[datetime]
) -> dict[datetime, pl.DataFrame]:
    """Per tick of ``events`` (with ``_tick``): every model's first use by anyone in the ticks before it
    (the state's table before the fold, then the batch's earlier ticks) and the stream's start
    (``MODEL_CONTEXT_SCHEMA``). The cluster stage's part: it reads every account's events."""
    firsts = events.group_by("model", "_tick").agg(pl.col("ts").min().alias("first_seen"))
    table = state.models.select("model", "first_seen")
    out = {}
    for tick in ticks:
        before = firsts.filter(pl.col("_tick") < tick)
        seen = (
            pl.concat([table, before.select("model", "first_seen")])
            .group_by("model")
            .agg(pl.min("first_seen"))
        )
        start = state.stream_start
        if start is None and before.height:
            start = before["first_seen"].min()  # type: ignore[assignment]
        if seen.height == 0 and start is not None:  # no model held: one row carries the start
            seen = pl.DataFrame({"model": [None], "first_seen": [None]}, schema=seen.schema)
        out[tick] = seen.sort("model").with_columns(pl.lit(start, UTC_US).alias("stream_start"))
    return out


def new_model_flags(
    state: WindowState, events: pl.DataFrame, settings: EngineSettings, relay: Relay | None = None
) -> pl.DataFrame:
    """``events`` (with ``_tick``) folded into the model table, with ``is_new_model``. Under
    ``context_lag`` a model's first use is the earlier of anyone's before the event's tick (the
    ``models`` kind, passed through ``relay``) and the event's own account's in its tick; the stream's
    start is the context's (none at the first tick: nothing is new there while ``model_warmup`` is at
    least a tick). Without the lag: ``WindowState.mark_new_models`` as before."""
    w = settings.windows
    if not settings.context_lag:
        return state.mark_new_models(events, w.model_warmup, w.new_model)
    ticks = sorted(events["_tick"].unique())
    if isinstance(relay, Published):  # an account stage: the cluster stage's, not its own accounts'
        contexts = {t: relay.at(t - w.tick).models for t in ticks}
    else:
        contexts = model_contexts(state, events, ticks)
    if relay is not None and not isinstance(relay, Published):
        contexts = {t: relay(PopulationContext.of_models(t - w.tick, m)).models for t, m in contexts.items()}
    folded = state.mark_new_models(events, w.model_warmup, w.new_model).drop("is_new_model")
    ctx = pl.concat([m.with_columns(pl.lit(t, UTC_US).alias("_tick")) for t, m in contexts.items()])
    starts = ctx.group_by("_tick").agg(pl.col("stream_start").max())
    point = ["account_id", "model", "_tick"]
    firsts = (
        events.group_by(point)
        .agg(pl.col("ts").min().alias("_own"))
        .join(ctx.drop("stream_start").drop_nulls("model"), on=["model", "_tick"], how="left")
        .join(starts, on="_tick", how="left")
        .select(*point, pl.min_horizontal("first_seen", "_own").alias("first_seen"), "stream_start")
    )
    new = (pl.col("first_seen") > pl.col("stream_start") + pl.lit(w.model_warmup)) & (
        pl.col("ts") - pl.col("first_seen") <= pl.lit(w.new_model)
    )
    return (
        folded.join(firsts, on=point, how="left")
        .with_columns(new.fill_null(False).alias("is_new_model"))
        .drop("first_seen", "stream_start")
    )
