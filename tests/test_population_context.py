"""Issue 13, round 15: the population context, one serializable object per tick (``window/context.py``).

Under ``context_lag`` the account verdicts read the population only through it: the sheet test's texts
many hold, the room's (template, venue) pairs and the team's tool keys, as of a tick before. It travels
between the stages as bytes (Arrow IPC per kind, no pickle): a replay with every tick's context
round-tripped through bytes gives the same alerts as one without, and the contexts it carried were not
empty (the room's and the team's days below each spare points through them). Damaged bytes give one
``ValueError``, never another exception. No prompt text is in a context.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_room_account import SCALE as ROOM_SCALE
from test_room_account import SEED as ROOM_SEED
from test_room_account import _params as room_params
from test_team_seat import ROOT, team_day  # noqa: F401 - the fixture

from detector.app import build_engine
from detector.engine import Observers
from detector.lab.simulate import simulate
from detector.runtime.replay import replay
from detector.settings import EngineSettings
from detector.window.context import KINDS, PopulationContext, Published
from detector.window.framing import write_frames

AS_OF = datetime(2026, 3, 2, 10, 15, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The kinds of a version 2 context, in its order.
V2_KINDS = ("sheets", "rooms", "teams", "models")
#: magic, version, as_of (epoch us), number of kinds: the header of versions 2 and 3
_HEADER = struct.Struct(">4sBqH")


def _context(n: int = 3) -> PopulationContext:
    kinds = {
        "sheets": {"text_fp": [2**64 - 1 - i for i in range(n)], "account_id": [f"a{i}" for i in range(n)]},
        "rooms": {"template": [str(i) for i in range(n)], "venue": ["198.51.100.0/24"] * n},
        "teams": {
            "tool": [f"sysprompt|{i}" for i in range(n)],
            "account_id": [f"s{i}" for i in range(n)],
            "established": [i % 2 == 0 for i in range(n)],
        },
        "models": {
            "model": [f"m{i}" for i in range(n)],
            "first_seen": [AS_OF] * n,
            "stream_start": [AS_OF] * n,
        },
        "new_seats": {"tool": [f"template|{i}" for i in range(n)]},
        "routers": {"reseller": [f"rs{i}" for i in range(n)], "org_id": [f"org{i}" for i in range(n)]},
        "aged_slots": {
            "slot": [f'{{"reseller":"rs{i}","org_id":"org{i}","key":"{980000 + i}"}}' for i in range(n)],
            "kind": ["logprob harvest"] * n,
            "seats": [2 + i for i in range(n)],
            "hits": [6.0 + i for i in range(n)],
            "requests": [16.0 + i for i in range(n)],
        },
    }
    return PopulationContext(AS_OF, **{k: pl.DataFrame(v, schema=KINDS[k]) for k, v in kinds.items()})


def _same(a: PopulationContext, b: PopulationContext) -> bool:
    def eq(x: pl.DataFrame | None, y: pl.DataFrame | None) -> bool:
        return x is y if x is None or y is None else x.equals(y)

    return a.as_of == b.as_of and all(eq(getattr(a, k), getattr(b, k)) for k in KINDS)


@pytest.mark.parametrize("n", [0, 1, 500])
def test_a_context_round_trips_through_bytes(n: int) -> None:
    ctx = _context(n)
    back = PopulationContext.from_bytes(ctx.to_bytes())
    assert _same(back, ctx)
    assert back.rows() == dict.fromkeys(KINDS, n)
    assert not _same(back, _context(n + 1))  # the comparison can fail


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_bytes_give_one_clear_error(data: st.DataObject) -> None:
    good = data.draw(st.sampled_from([_context(4).to_bytes(), _version_2(_context(4))]))
    how = data.draw(st.sampled_from(["random", "truncate", "flip", "extend"]))
    if how == "random":
        bad = data.draw(st.binary(max_size=400))
    elif how == "truncate":
        bad = good[: data.draw(st.integers(0, len(good) - 1))]
    elif how == "flip":
        at = data.draw(st.integers(0, len(good) - 1))
        bad = good[:at] + bytes([good[at] ^ data.draw(st.integers(1, 255))]) + good[at + 1 :]
    else:
        bad = good + data.draw(st.binary(min_size=1, max_size=20))
    try:
        back = PopulationContext.from_bytes(bad)
    except ValueError as exc:
        assert str(exc).startswith("population context:")
    else:  # a flip inside a value can still read back: then it is a context of the right shape
        assert all(getattr(back, k).schema == KINDS[k] for k in KINDS if getattr(back, k) is not None)


def _version_2(ctx: PopulationContext, version: int = 2, kinds: tuple[str, ...] = V2_KINDS) -> bytes:
    """``ctx`` as a round-15 cluster stage wrote it (version 2: no ``new_seats`` kind), written here
    byte by byte as that code did (``version``, ``kinds``: to write foreign headers the same way)."""
    out = io.BytesIO()
    out.write(_HEADER.pack(b"DPCX", version, (ctx.as_of - EPOCH) // timedelta(microseconds=1), len(kinds)))
    write_frames(out, ((k, getattr(ctx, k)) for k in kinds))
    return out.getvalue()


def test_a_version_2_context_reads_with_no_new_seats_and_writes_back_as_it_came() -> None:
    """Round 18: a cluster stage from before it publishes no ``new_seats`` or ``routers``; an account
    stage reads its contexts (every other kind the same) with both None, so the lone-seat test is not applied
    to the points that read them (``lone.group_reader``), never applied as if no group of new seats
    existed (that would spare every farm's first seats)."""
    ctx = _context(3)
    old = PopulationContext.from_bytes(_version_2(ctx))
    assert old.new_seats is None and ctx.new_seats is not None and ctx.new_seats.height == 3
    assert old.routers is None and ctx.routers is not None and ctx.routers.height == 3
    assert all(getattr(old, k).equals(getattr(ctx, k)) for k in V2_KINDS)
    assert old.to_bytes() == _version_2(ctx)
    assert old.rows()["new_seats"] == 0 and old.rows()["routers"] == 0
    # a header that says one version and carries the other's kinds, or another version, is refused
    for version, kinds in [(3, V2_KINDS), (2, tuple(KINDS)), (1, V2_KINDS), (5, tuple(KINDS))]:
        with pytest.raises(ValueError, match=r"^population context:"):
            PopulationContext.from_bytes(_version_2(ctx, version, kinds))


def test_a_version_3_context_reads_with_no_aged_slots_and_writes_back_as_it_came() -> None:
    """Round 21: a cluster stage from before it publishes no ``aged_slots``; an account stage reads its
    contexts (every other kind the same) with the kind None, so the aged seats' release is not applied to
    the points that read them (``aged.AgedSeats``), and the context is written back as version 3. The
    kind itself round-trips (``test_a_context_round_trips_through_bytes``: its rows, seats and pooled
    counts the same)."""
    ctx = _context(3)
    v3 = (*V2_KINDS, "new_seats", "routers")
    old = PopulationContext.from_bytes(_version_2(ctx, 3, v3))
    assert old.aged_slots is None and ctx.aged_slots is not None and ctx.aged_slots.height == 3
    assert all(getattr(old, k).equals(getattr(ctx, k)) for k in v3)
    assert old.to_bytes() == _version_2(ctx, 3, v3)
    assert old.rows()["aged_slots"] == 0
    back = PopulationContext.from_bytes(ctx.to_bytes()).aged_slots
    assert back is not None and back.equals(ctx.aged_slots) and back["seats"].to_list() == [2, 3, 4]
    # a version 3 header carrying the version 4 kind is refused
    with pytest.raises(ValueError, match=r"^population context:"):
        PopulationContext.from_bytes(_version_2(ctx, 3, tuple(KINDS)))


_EVERY_OFFSET = """
import sys
sys.path.insert(0, sys.argv[1])
from test_population_context import _context
from detector.window.context import PopulationContext

good, fails = _context(4).to_bytes(), 0
for fill in (b"\\x7f" * 4, b"\\xff" * 8):
    for at in range(len(good) - len(fill)):
        try:
            PopulationContext.from_bytes(good[:at] + fill + good[at + len(fill) :])
        except ValueError:
            fails += 1
print(fails)
"""


def test_lengths_overwritten_anywhere_never_end_the_process() -> None:
    """Round 15 review: a length in a kind's Arrow IPC bytes overwritten with 0x7f7f7f7f made polars'
    reader allocate 9e18 bytes and abort the whole process (no exception to catch). Every offset of a
    context, overwritten so, gives a ``ValueError`` or a context; the process lives (run apart: an
    abort would end this one)."""
    here = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, "-c", _EVERY_OFFSET, str(here)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) > 1000  # most damage is caught, so the loop really read damaged bytes


def _replay(events: Path, out: Path, relay: Any = None) -> bytes:
    settings = EngineSettings().model_copy(update={"context_lag": True})
    engine = build_engine(
        ROOT / "rules", settings=settings, observers=Observers(on_context=relay, on_models=relay)
    )
    replay([events], engine, out)
    return out.read_bytes()


class _Wire:
    """The publication as bytes: each context written, read back, and its figures kept."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.rows: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.strings: set[str] = set()

    def __call__(self, ctx: PopulationContext) -> PopulationContext:
        raw = ctx.to_bytes()
        self.sizes.append(len(raw))
        back = PopulationContext.from_bytes(raw)
        assert _same(back, ctx)
        for k in KINDS:
            frame = getattr(back, k)
            self.rows[k] += frame.height
            for c, dtype in frame.schema.items():
                if dtype == pl.String:
                    self.strings |= set(frame[c].drop_nulls().to_list())
        return back


def _prompts(events: Path) -> set[str]:
    texts = pl.read_parquet(events, columns=["prompt"])["prompt"].struct.field("text").drop_nulls()
    return set(texts.unique().to_list())


def _check_day(events: Path, tmp_path: Path, reason: str) -> _Wire:
    wire = _Wire()
    direct = _replay(events, tmp_path / "direct.jsonl")
    assert _replay(events, tmp_path / "wire.jsonl", wire) == direct
    assert f'"evidence:{reason}"'.encode() in direct, f"the {reason} test spared nobody: the check is vacuous"
    assert wire.sizes and max(wire.sizes) > 100
    # privacy: only hashes, network prefixes and account ids travel; no prompt text, whole or in part
    prompts = _prompts(events)
    assert prompts and not wire.strings & prompts
    assert not any(s in p for s in wire.strings if len(s) >= 12 and not s.isdigit() for p in prompts)
    return wire


def test_the_team_day_reads_its_teams_through_bytes(
    team_day: tuple[Path, list[str], list[str]],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    events, team, _ = team_day
    wire = _check_day(events, tmp_path, "team")
    assert wire.rows["teams"] > 0 and set(team) <= wire.strings  # the team's seats travel as its holders
    # the verdicts read the population only through the context: emptied in transit, no team is found
    blank = _replay(events, tmp_path / "blank.jsonl", _blank)
    assert b'"evidence:team"' not in blank


def _blank(ctx: PopulationContext) -> PopulationContext:
    return PopulationContext(ctx.as_of, *(getattr(ctx, k).clear() for k in KINDS))


def test_the_workshop_day_reads_its_room_through_bytes(tmp_path: Path) -> None:
    simulate(tmp_path, 1.0, ROOM_SEED, scale=ROOM_SCALE, params=room_params())
    wire = _check_day(tmp_path / "events.parquet", tmp_path, "room")
    assert wire.rows["rooms"] > 0
    blank = _replay(tmp_path / "events.parquet", tmp_path / "blank.jsonl", _blank)
    assert b'"evidence:room"' not in blank  # emptied in transit, no room is found


def test_an_unpublished_tick_is_one_clear_error_not_a_key_error() -> None:
    book = Published({AS_OF: _context().to_bytes()})
    assert book.at(AS_OF).rows()["sheets"] == 3
    with pytest.raises(ValueError, match="none published as of"):
        book.at(AS_OF + timedelta(minutes=15))
