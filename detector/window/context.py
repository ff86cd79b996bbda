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

The cluster stage's part, building it, is ``detect/context.py``.

Bytes: a short header (magic, version, ``as_of`` in epoch microseconds) and one Arrow IPC stream per
kind (polars; no pickle), each checked against its schema when read back.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from detector.schema import UTC_US, make_schema
from detector.window.sheets import HOLDER_SCHEMA

_MAGIC = b"DPCX"
_VERSION = 2  # 2: ``teams`` says whether each group is an established customer's (round 15)
_HEADER = struct.Struct(">4sBqH")  # magic, version, as_of (epoch us), number of kinds
_KIND = struct.Struct(">HQ")  # name length, payload length
ROOM_SCHEMA = make_schema({"template": pl.String, "venue": pl.String})
TEAM_SCHEMA = make_schema({"tool": pl.String, "account_id": pl.String, "established": pl.Boolean})
#: The kinds and their schemas, in the order they are written.
KINDS: dict[str, pl.Schema] = {"sheets": HOLDER_SCHEMA, "rooms": ROOM_SCHEMA, "teams": TEAM_SCHEMA}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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

    def rows(self) -> dict[str, int]:
        """Rows per kind."""
        return {name: getattr(self, name).height for name in KINDS}

    def to_bytes(self) -> bytes:
        """The context as bytes for a compacted topic (``from_bytes`` reads them back)."""
        out = io.BytesIO()
        as_of = (self.as_of - _EPOCH) // timedelta(microseconds=1)
        out.write(_HEADER.pack(_MAGIC, _VERSION, as_of, len(KINDS)))
        for name in KINDS:
            payload = io.BytesIO()
            getattr(self, name).write_ipc_stream(payload, compression="zstd")
            raw = name.encode()
            out.write(_KIND.pack(len(raw), payload.tell()))
            out.write(raw)
            out.write(payload.getvalue())
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PopulationContext:
        """A context written by ``to_bytes``; ``ValueError`` naming what is wrong with any other bytes."""
        view = memoryview(data)
        if len(view) < _HEADER.size:
            raise ValueError("population context: too short for its header")
        magic, version, as_of, n = _HEADER.unpack_from(view)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"population context: not a version {_VERSION} context")
        at, frames = _HEADER.size, {}
        for _ in range(n):
            if len(view) < at + _KIND.size:
                raise ValueError("population context: truncated")
            size, length = _KIND.unpack_from(view, at)
            at += _KIND.size
            name = bytes(view[at : at + size]).decode("utf-8", errors="replace")
            at += size
            if name not in KINDS or name in frames or len(view) < at + length:
                raise ValueError(f"population context: unexpected or truncated kind {name!r}")
            try:
                frame = pl.read_ipc_stream(io.BytesIO(bytes(view[at : at + length])))
            except (Exception, pl.exceptions.PanicException) as exc:  # several kinds on damaged bytes
                raise ValueError(
                    f"population context: kind {name!r} unreadable ({type(exc).__name__})"
                ) from exc
            if frame.schema != KINDS[name]:
                raise ValueError(f"population context: kind {name!r} has schema {dict(frame.schema)}")
            frames[name] = frame
            at += length
        if at != len(view) or set(frames) != set(KINDS):
            raise ValueError("population context: kinds missing or trailing bytes")
        return cls(_EPOCH + timedelta(microseconds=as_of), **frames)


#: The publication between the stages: handed each tick's context, gives what the account stage reads
#: (``Observers.on_context``; a test round-trips it through bytes, a benchmark measures it).
Relay = Callable[[PopulationContext], PopulationContext]
#: Each tick's context, keyed by the tick whose points read it (``as_of``: a lag before it).
Contexts = dict[datetime, PopulationContext]


def sheet_holders(contexts: Contexts) -> pl.DataFrame:
    """The contexts' sheets as ``account_sheets`` reads them: (tick_end, ``HOLDER_SCHEMA``), ``tick_end``
    the tick whose points read each."""
    empty = pl.DataFrame(schema={**HOLDER_SCHEMA, "tick_end": UTC_US})
    frames = [c.sheets.with_columns(pl.lit(t, UTC_US).alias("tick_end")) for t, c in contexts.items()]
    return pl.concat([empty, *frames])
