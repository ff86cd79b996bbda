"""Issue 17, round 21: bought aged seats (``knobs.draw_aged_signups``, ``provision._bought_created``).

An attacker who buys aged accounts one by one gets seats opened months apart, not in a sign-up burst
shifted back. The matrix draws each aged campaign's sign-up shape from its own stream: ``bursts`` (the
``signups`` knob's bursts, 300 days back) or ``bought`` (each seat's age uniform in ``BOUGHT_AGE_DAYS``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detector.lab.knobs import (
    AGED_SIGNUP_CELLS,
    BOUGHT_AGE_DAYS,
    SEED_BASE,
    draw_knobs,
    draw_params,
    knob_cells,
)
from detector.lab.simulate import FAMILIES, SimParams, simulate

DAY_S = 86_400.0


def _aged_cells(draws: range) -> list[tuple[int, str, dict[str, str]]]:
    out = []
    for i in draws:
        knobs, _ = draw_params(i, 20, 1.85)
        out += [(i, f, knob_cells(knobs[f])) for f in FAMILIES if knobs[f]["age"] == "aged"]
    return out


def test_aged_campaigns_draw_both_signup_shapes_and_fresh_ones_none() -> None:
    """Over dev draws both shapes occur on aged campaigns (about half each); a fresh campaign reports
    no shape; the shared knobs of a draw are what ``draw_knobs`` alone gives for its seed."""
    aged = _aged_cells(range(0, 120))
    shapes = [c.get("aged_signups") for _, _, c in aged]
    assert set(shapes) == set(AGED_SIGNUP_CELLS)
    assert 0.35 < shapes.count("bought") / len(shapes) < 0.65
    for i in (3, 250):
        knobs, _ = draw_params(i, 20, 1.85)
        rng = np.random.default_rng(SEED_BASE + i)
        for f in FAMILIES:
            shared = draw_knobs(rng)
            assert {k: knobs[f][k] for k in shared} == shared
            assert ("aged_signups" in knob_cells(knobs[f])) == (knobs[f]["age"] == "aged")


def test_bought_seats_sign_ups_span_months(tmp_path: Path) -> None:
    """A bought campaign of a dev draw, simulated alone: its first seats were opened over more than 30
    days, each 60-700 days before the campaign started (a burst campaign's within 96 hours)."""
    draw, family = next((i, f) for i, f, c in _aged_cells(range(0, 40)) if c.get("aged_signups") == "bought")
    _, params = draw_params(draw, 20, 1.85)
    base = SimParams()
    update: dict[str, Any] = {f: getattr(base, f).model_copy(update={"campaigns": 0}) for f in FAMILIES}
    for name, persona in base:
        if hasattr(persona, "accounts") and name != "casual":
            update[name] = persona.model_copy(update={"accounts": 0})
    update[family] = getattr(params, family).model_copy(update={"churn_fraction": 0.0})
    simulate(tmp_path, 0.1, SEED_BASE + draw, scale=1.0, params=base.model_copy(update=update))
    labels = orjson.loads((tmp_path / "labels.json").read_bytes())
    (cid, camp), *_ = ((k, v) for k, v in labels["campaigns"].items() if v["family"] == family)
    start = datetime.fromisoformat(camp["start_ts"])
    created = [
        datetime.fromisoformat(a["created_at"])
        for a in labels["accounts"].values()
        if a["campaign_id"] == cid
    ]
    assert len(created) >= 4
    assert (max(created) - min(created)).total_seconds() / DAY_S > 30.0
    lo, hi = BOUGHT_AGE_DAYS
    assert all(lo <= (start - c).total_seconds() / DAY_S <= hi for c in created)
