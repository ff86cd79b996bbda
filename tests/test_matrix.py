"""The evasion matrix: knobs drawn from their ranges, held-out block apart, cells and personas scored."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from detector.errors import ConfigError
from detector.lab.knobs import (
    FAMILY_KNOBS,
    KNOBS,
    SEED_BASE,
    SESSION_TURNS,
    SPLIT_CELLS,
    SPLIT_FAMILIES,
    SPLIT_SEATS,
    SPLIT_SHARE,
    VERIFIED_CELLS,
    draw_family_knobs,
    draw_knobs,
    draw_params,
    draw_split,
    draw_verified,
    knob_cells,
)
from detector.lab.matrix import HELD_OUT_FROM, MatrixConfig, run_matrix
from detector.lab.simulate import FAMILIES
from detector.lab.simulate.params import LOOKALIKE_PERSONAS, LOOKALIKE_SIZES

ROOT = Path(__file__).resolve().parents[1]

#: Knobs drawn from their own random streams (a draw's other knobs are what ``draw_knobs`` gives).
_OWN_STREAMS = ("session", "split", "verified", "aged_signups", "aged_seed")


def test_knobs_cover_their_ranges() -> None:
    rng = np.random.default_rng(0)
    cells = [knob_cells(draw_knobs(rng)) for _ in range(400)]
    for knob, values in KNOBS.items():
        assert {c[knob] for c in cells} == set(values), knob
    for family, own in FAMILY_KNOBS.items():
        # a family's own knob, from its own stream: the other knobs' draws are as they were
        seen = [knob_cells(draw_knobs(rng) | draw_family_knobs(family, rng)) for _ in range(400)]
        for knob, values in own.items():
            assert {c[knob] for c in seen} == set(values), knob


def test_a_family_knob_leaves_every_other_knob_of_a_draw_as_it_was() -> None:
    """``session`` (agentic_pivot's mean session length) comes from its own stream: a draw's other knobs
    are what ``draw_knobs`` alone gives for that seed, and it reaches the simulator's parameters."""
    for index in (0, 7, 620):
        knobs, params = draw_params(index, 20, 1.85)
        rng = np.random.default_rng(SEED_BASE + index)
        assert {f: draw_knobs(rng) for f in FAMILIES} == {
            f: {k: v for k, v in knobs[f].items() if k not in _OWN_STREAMS} for f in FAMILIES
        }
        lo, hi = SESSION_TURNS
        assert lo <= knobs["agentic_pivot"]["session"] <= hi
        assert params.agentic_pivot.session_turns == knobs["agentic_pivot"]["session"]
        assert "session" in knob_cells(knobs["agentic_pivot"])
        assert "session" not in knob_cells(knobs["cot_hydra"])


def test_the_split_knob_is_drawn_from_its_own_stream() -> None:
    """Best-of-k split across seats (round 12): on for about half the draws of each reasoning family,
    k in 3-8, reported per campaign; the other knobs of a draw are what they were without it."""
    draws = [draw_split(i) for i in range(400)]
    for f in SPLIT_FAMILIES:
        ks = [d[f] for d in draws]
        assert 0.35 < sum(k > 0 for k in ks) / len(ks) < 0.65
        assert {k for k in ks if k} == set(range(3, 9))
    cells = {
        knob_cells({**draw_knobs(np.random.default_rng(0)), "split": k})["split"] for k in (0, 3, 5, 6, 8)
    }
    assert cells == set(SPLIT_CELLS)
    assert "split" not in knob_cells(draw_knobs(np.random.default_rng(0)))
    # round 13: agentic_pivot's split from a stream of its own, the reasoning families' as they were
    for i in range(50):
        rng = np.random.default_rng([SEED_BASE + i, zlib.crc32(b"split")])
        old = {}
        for f in ("cot_hydra", "low_and_slow"):
            on, k = rng.random() < SPLIT_SHARE, int(rng.integers(SPLIT_SEATS[0], SPLIT_SEATS[1] + 1))
            old[f] = k if on else 0
        assert {f: k for f, k in draws[i].items() if f != "agentic_pivot"} == old
    knobs, params = draw_params(next(i for i, d in enumerate(draws) if d["agentic_pivot"]), 20, 1.85)
    assert params.agentic_pivot.split_seats == knobs["agentic_pivot"]["split"] > 0


def test_the_verified_knob_is_drawn_from_its_own_stream() -> None:
    """Verified campaign accounts (round 12): every family all-verified on about half the draws, reported
    per campaign; the draw's other knobs are what its own stream gives (``draw_knobs`` from the seed)."""
    draws = [draw_verified(i) for i in range(400)]
    for f in FAMILIES:
        assert 0.35 < sum(d[f] == "all" for d in draws) / len(draws) < 0.65
        assert {d[f] for d in draws} == set(VERIFIED_CELLS)
    for i in (0, 7, 733):
        knobs, params = draw_params(i, 20, 0.25)
        rng = np.random.default_rng(SEED_BASE + i)
        for f in FAMILIES:
            assert {k: v for k, v in knobs[f].items() if k not in _OWN_STREAMS} == draw_knobs(rng)
            assert knob_cells(knobs[f])["verified"] == knobs[f]["verified"] == draw_verified(i)[f]
            share = getattr(params, f).verified_share
            assert share == (1.0 if knobs[f]["verified"] == "all" else None)
        forced, _ = draw_params(i, 20, 0.25, verified="all")
        assert {f: forced[f]["verified"] for f in FAMILIES} == dict.fromkeys(FAMILIES, "all")
    assert "verified" not in knob_cells(draw_knobs(np.random.default_rng(0)))
    with pytest.raises(ConfigError, match="--verified"):
        run_matrix(MatrixConfig(draws=1, verified="some"))


def test_a_small_matrix_scores_every_family_and_persona(shared_dir: Path, tmp_path: Path) -> None:
    cfg = MatrixConfig(
        draws=1,
        days=0.5,
        scale=0.05,
        attack_accounts=8,
        rules_dir=ROOT / "rules",
        ip_intel_dir=shared_dir / "data" / "ip_intel",
    )
    result = run_matrix(cfg, tmp_path)
    assert result.draw_indices == [0]
    assert {c["intel"] for c in result.cells} == {"on", "off"}
    # a family whose campaign sent nothing in the half day has no row (an agentic campaign at 5 requests
    # a day in sessions of ~30 requests: one session per account every six days)
    families = {c["family"] for c in result.cells}
    assert families <= set(FAMILIES) and len(families) >= len(FAMILIES) - 1
    # every family reports each knob once per draw and IP-intel setting
    # + one "all" row per family, + the split knob's row for the families that may split best-of-k,
    # + a family's own knobs (agentic: session), + the verified knob's row (every family), + the aged
    # sign-up shape's row for an aged campaign (round 21)
    aged = {r["family"] for r in result.campaigns if r["knobs"]["age"] == "aged"}
    assert all(("aged_signups" in r["knobs"]) == (r["family"] in aged) for r in result.campaigns)
    per_family = {
        f: len(KNOBS) + 2 + (f in SPLIT_FAMILIES) + len(FAMILY_KNOBS.get(f, {})) + (f in aged)
        for f in families
    }
    assert len(result.cells) == 2 * sum(per_family.values())
    assert all(0.0 <= c["recall"] <= 1.0 for c in result.cells)
    # the per-campaign rows the cells are summed from: one per family and setting, summing back
    assert len(result.campaigns) == 2 * len(families)
    for c in result.cells:
        if c["knob"] == "all":
            rows = [r for r in result.campaigns if (r["intel"], r["family"]) == (c["intel"], c["family"])]
            acc = sum(r["accounts"] for r in rows)
            assert c["recall"] == sum(r["detected"] for r in rows) / acc
    # what named each campaign's accounts: every detected account under at least one name
    for r in result.campaigns:
        assert (r["detected"] == 0) == (not r["reasons"])
        assert all(0 < n <= r["detected"] for n in r["reasons"].values())
    for p in result.personas:  # the same per persona, summed over the draws
        assert (p["medium"] == 0) == (not p["reasons"]) and max(p["reasons"].values(), default=0) <= p[
            "medium"
        ]
    assert {p["persona"] for p in result.personas} >= {"casual", "eval_harness", "company_card"}
    # every honest look-alike is in every draw, at its realistic size whatever the scale
    looks = {p["persona"]: p["accounts"] for p in result.personas if p["intel"] == "off"}
    assert set(LOOKALIKE_PERSONAS) <= set(looks)
    # the router's customers plus one company's team of 8-20 seats among them (``router_team``)
    assert 8 <= looks["router_customers"] - LOOKALIKE_SIZES["router_customers"] <= 20
    assert looks["tutoring_backend"] == 2
    # no honest account of this small run reaches high
    assert all(p["high"] == 0 for p in result.personas)
    held = run_matrix(MatrixConfig(draws=0, held_out=True), tmp_path)
    assert held.draw_indices == [] and held.config["held_out"]
    assert HELD_OUT_FROM > 100
