"""Guard rails for rules (issue 14, item 13 / "what to build" 5).

- ``rules check`` fails an enforce rule that fires on too many honest accounts of the reference
  population shipped with the rules; a ``no_fire`` test must bind every feature the condition reads;
  an empty rules folder is an error.
- At run time an enforce rule that fires on most of one tick's accounts is demoted to shadow, counted,
  logged, and raises no alert.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import CollectorRegistry

from detector.app import build_engine
from detector.checkpoint import load_engine, save_engine
from detector.contracts import Alert
from detector.decode_parquet import decode_frame
from detector.detect.rules import RuleLoadError, check_rules, load_rules
from detector.detect.runaway import guard_late, guard_now, tick_counts
from detector.runtime.metrics import Metrics
from detector.settings import RuleGuardSettings
from detector.window.features import CATALOGUES

ROOT = Path(__file__).resolve().parents[1]

EVERYONE = """\
id: account_everyone
title: Fires on everyone
description: The issue's rule that passed the check and flagged all 1,633 honest accounts.
severity: high
target: account
condition: {condition}
tests:
  - name: busy
    features: {{requests_24h: 50}}
    expect: fire
  - name: {no_fire_name}
    features: {no_fire}
    expect: no_fire
"""


def _rules_with(tmp_path: Path, condition: str, no_fire: str, mode: str | None = None) -> Path:
    """The shipped rules (and their reference population) plus one more rule."""
    out = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", out)
    text = EVERYONE.format(condition=condition, no_fire=no_fire, no_fire_name="quiet account")
    if mode:
        text += f"mode: {mode}\n"
    (out / "account_everyone.yaml").write_text(text)
    return out


def test_shipped_rules_pass_against_their_reference_population() -> None:
    assert (ROOT / "rules" / "reference" / "population.json").is_file()
    report = check_rules(ROOT / "rules", CATALOGUES)
    assert report.ok, report.render()


def test_the_issues_rule_with_an_unbound_no_fire_test_fails_the_check(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, "requests_24h >= 0", "{cot_share_24h: 0.0}")
    report = check_rules(rules, CATALOGUES)
    assert not report.ok
    messages = [e.message for e in report.errors if e.rule_id == "account_everyone"]
    assert any("no_fire test 'quiet account' leaves requests_24h unbound" in m for m in messages), messages
    with pytest.raises(RuleLoadError, match="unbound"):
        load_rules(rules, CATALOGUES)


def test_a_rule_that_passes_its_own_tests_but_fires_on_honest_users_fails(tmp_path: Path) -> None:
    rules = _rules_with(tmp_path, "requests_24h >= 1", "{requests_24h: 0}")
    load_rules(rules, CATALOGUES)  # loads: its inline tests pass and bind everything
    report = check_rules(rules, CATALOGUES)
    (error,) = [e for e in report.errors if e.rule_id == "account_everyone"]
    assert "reference population" in error.message and "casual 100%" in error.message
    assert len(report.errors) == 1, report.render()
    # in shadow mode it may be measured
    shadow = _rules_with(tmp_path / "s", "requests_24h >= 1", "{requests_24h: 0}", mode="shadow")
    assert check_rules(shadow, CATALOGUES).ok


def test_an_empty_rules_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "reference").mkdir()
    report = check_rules(tmp_path, CATALOGUES)
    assert not report.ok and "no rule file" in report.render()
    with pytest.raises(RuleLoadError, match="no rule file"):
        load_rules(tmp_path, CATALOGUES)


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    from detector.lab.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    simulate(out, days=0.5, seed=5, scale=0.3)
    decoded = decode_frame(pl.read_parquet(out / "events.parquet"), lambda i: f"row{i}")
    return decoded.events.drop("_pos").sort("ts", "request_id")


def test_a_demotion_survives_a_restart_unless_the_rule_changed(
    tmp_path: Path, events: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart is not a reload: the restored engine keeps the demotion, so the rule's hits in ticks
    below the limit raise no alert that an uninterrupted run would not raise (the soak saw 348). A rule
    edited while the daemon was down is a new rule: its demotion is lifted."""
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "rules" / "account_logprob_harvest.yaml", rules)
    everyone = rules / "account_everyone.yaml"
    everyone.write_text(
        EVERYONE.format(condition="requests_24h >= 1", no_fire="{requests_24h: 0}", no_fire_name="idle")
    )
    engine = build_engine(rules, models=False)
    engine.settings.rule_guard.min_subjects = 20
    engine.process(events.slice(0, events.height // 2))
    assert engine.demoted == {"account_everyone"}
    save_engine(engine, tmp_path / "state")

    restored = build_engine(rules, models=False)
    with caplog.at_level(logging.WARNING, logger="detector.detect.runaway"):
        load_engine(restored, tmp_path / "state")
    assert restored.demoted == {"account_everyone"}
    assert [r for r in caplog.records if "stays demoted" in r.getMessage()]

    everyone.write_text(
        EVERYONE.format(condition="requests_24h >= 2", no_fire="{requests_24h: 1}", no_fire_name="idle")
    )
    edited = build_engine(rules, models=False)
    load_engine(edited, tmp_path / "state")
    assert edited.demoted == set()


def test_a_runaway_enforce_rule_is_demoted_counted_logged_and_silent(
    tmp_path: Path, events: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "rules" / "account_logprob_harvest.yaml", rules)
    (rules / "account_everyone.yaml").write_text(
        EVERYONE.format(condition="requests_24h >= 1", no_fire="{requests_24h: 0}", no_fire_name="idle")
    )
    engine = build_engine(rules, models=False)
    engine.settings.rule_guard.min_subjects = 20  # a small simulated population
    alerts: list[Alert] = []
    with caplog.at_level(logging.ERROR, logger="detector.detect.runaway"):
        for start in range(0, events.height, 5_000):
            alerts += engine.process(events.slice(start, 5_000))
        alerts += engine.flush()
    assert engine.demoted == {"account_everyone"}
    assert engine.stats.demoted == {"account_everyone": 1}
    assert engine.stats.shadow_hits["account_everyone"] > 100
    assert not [a for a in alerts if any(r.name == "account_everyone" for r in a.reasons)]
    assert [r for r in caplog.records if "demoted to shadow" in r.getMessage()]
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.sync_engine(engine)
    assert registry.get_sample_value("detector_rule_demotions_total", {"rule": "account_everyone"}) == 1
    # swapping the rule set in again (a reload) lifts the demotion
    engine.rules = load_rules(rules, CATALOGUES)
    assert engine.demoted == set()


def test_the_guard_demotes_from_the_runaway_tick_whatever_the_batch(
    tmp_path: Path, events: pl.DataFrame
) -> None:
    """``guard_now`` works per tick: a rule that runs away mid-stream is demoted from the first tick it
    fired on most subjects, that tick included, and its hits in earlier ticks stay live, whether the
    ticks are closed one per call (a daemon) or all in one (a replay). Before round 16 the one-call run
    demoted it for the whole frame and lost the early alerts (72 alerts against 3 here)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "rules" / "account_logprob_harvest.yaml", rules)
    text = EVERYONE.format(  # reasoning harvesters first, everyone seen for 4 h from then on
        condition="requests_24h >= 1 and (observed_hours >= 4 or cot_share_24h >= 0.5)",
        no_fire="{requests_24h: 0, observed_hours: 0, cot_share_24h: 0}",
        no_fire_name="idle",
    )
    busy = "{requests_24h: 50}"
    (rules / "account_everyone.yaml").write_text(text.replace(busy, busy[:-1] + ", observed_hours: 5}"))
    tick = (pl.col("ts") - pl.col("ts").min()).dt.total_seconds() // 900  # the default 15-minute tick
    per_tick = events.with_columns(tick.alias("_tick")).partition_by("_tick", maintain_order=True)
    runs = []
    for batches in ([b.drop("_tick") for b in per_tick], [events]):
        engine = build_engine(rules, models=False)
        engine.settings.rule_guard.min_subjects = 20  # a small simulated population
        alerts: list[Alert] = [a for batch in batches for a in engine.process(batch)] + engine.flush()
        assert engine.demoted == {"account_everyone"} and engine.stats.demoted == {"account_everyone": 1}
        hits = (engine.stats.rule_hits["account_everyone"], engine.stats.shadow_hits["account_everyone"])
        runs.append(([a.model_dump(mode="json") for a in alerts], hits))
    (daemon, daemon_hits), (replay, replay_hits) = runs
    assert len(per_tick) > 40 and daemon_hits == replay_hits and min(daemon_hits) > 0
    assert [a for a in replay if any(r["name"] == "account_everyone" for r in a["reasons"])]
    assert daemon == replay


def test_the_late_guard_demotes_from_the_tick_after_the_populations_runaway() -> None:
    """``guard_late``: the runaway tick's own hits stay live, later ticks' are shadow; the decision reads
    the relay's (population) counts, so a stage of too few subjects still demotes."""
    t1, t2, t3 = (datetime(2026, 3, 2, h, tzinfo=UTC) for h in (1, 2, 3))
    frame = pl.DataFrame({"_point": ["a1", "b1", "a2", "a3"], "tick_end": [t1, t1, t2, t3]})
    hits = pl.DataFrame({"rule_id": ["r"] * 4, "mode": ["enforce"] * 4, "_point": ["a1", "b1", "a2", "a3"]})
    guard = RuleGuardSettings(max_fire_share=0.5, min_subjects=3)
    held: tuple[set[str], Counter[str]] = (set(), Counter())
    # alone (2 subjects a tick at most): under min_subjects, nothing demoted
    assert guard_late(hits, frame, "_point", guard, held)["mode"].to_list() == ["enforce"] * 4
    assert not held[0]
    # the population: 4 more subjects at t1, 2 of them hit (4 of 6 > half)
    others = tick_counts(
        pl.DataFrame({"rule_id": ["r", "r"], "mode": ["enforce"] * 2, "_point": ["c", "d"]}),
        pl.DataFrame({"_point": ["c", "d", "e", "f"], "tick_end": [t1] * 4}),
        "_point",
    )
    out = guard_late(hits, frame, "_point", guard, held, lambda local: pl.concat([local, others]))
    assert out["mode"].to_list() == ["enforce", "enforce", "shadow", "shadow"]
    assert held == ({"r"}, Counter({"r": 1}))


def test_the_guard_in_the_tick_demotes_from_the_runaway_tick_on() -> None:
    """``guard_now``: a rule's hits before its first runaway tick stay live, that tick's and later ones'
    are shadow; a held rule is shadow everywhere in later frames; a frame without ``tick_end`` (a
    cluster frame) is one tick."""
    t1, t2, t3 = (datetime(2026, 3, 2, h, tzinfo=UTC) for h in (1, 2, 3))
    points = [f"{p}{i}" for i in (1, 2, 3) for p in "abc"]
    frame = pl.DataFrame({"_point": points, "tick_end": [t for t in (t1, t2, t3) for _ in "abc"]})
    fired = ["a1", "a2", "b2", "a3"]  # 1 of 3 at t1, 2 of 3 at t2 (over half), 1 of 3 at t3
    hits = pl.DataFrame({"rule_id": ["r"] * 4, "mode": ["enforce"] * 4, "_point": fired})
    guard = RuleGuardSettings(max_fire_share=0.5, min_subjects=3)
    held: tuple[set[str], Counter[str]] = (set(), Counter())
    assert guard_now(hits, frame, "_point", guard, held)["mode"].to_list() == ["enforce"] + ["shadow"] * 3
    assert held == ({"r"}, Counter({"r": 1}))
    assert guard_now(hits, frame, "_point", guard, held)["mode"].to_list() == ["shadow"] * 4
    assert held == ({"r"}, Counter({"r": 1}))  # counted once
    clusters = pl.DataFrame({"cluster_id": ["c1", "c2", "c3"]})
    two = pl.DataFrame({"rule_id": ["q", "q"], "mode": ["enforce"] * 2, "cluster_id": ["c1", "c2"]})
    fresh: tuple[set[str], Counter[str]] = (set(), Counter())
    assert guard_now(two, clusters, "cluster_id", guard, fresh)["mode"].to_list() == ["shadow"] * 2
    assert fresh[0] == {"q"}
