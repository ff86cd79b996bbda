"""Issue 13 item 3: the account stage is partition-local (``runtime/shards.py``).

Under ``context_lag`` account stages fed only the events of the accounts whose Kafka partition (murmur2
of ``account_id``, mod K) is theirs, reading the population only from the contexts the cluster stage
published as bytes, plus the cluster stage (every event, cluster verdicts only), raise the single
engine's alerts: the same (alert_id, revision) pairs and the same bytes, for K = 2 and 3. An account
stage that read its own accounts' population instead (a foreign account's state it does not hold)
raises other alerts on the workshop's day: the check can fail.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import polars as pl
import pytest
from kafka.partitioner.default import DefaultPartitioner
from test_room_account import SCALE as ROOM_SCALE
from test_room_account import SEED as ROOM_SEED
from test_room_account import _params as room_params
from test_team_seat import ROOT

from detector.app import build_engine
from detector.engine import Observers
from detector.lab.simulate import simulate
from detector.runtime.replay import replay
from detector.runtime.shards import Publication, replay_split, shard_of, split_events
from detector.settings import EngineSettings
from detector.window.context import Published


def _lines(*paths: Path) -> list[str]:
    return sorted(line for p in paths for line in p.read_text().splitlines())


def _ids(lines: list[str]) -> list[tuple[str, int]]:
    return sorted((a["alert_id"], a["revision"]) for a in map(json.loads, lines))


def test_shard_of_is_kafkas_default_partition() -> None:
    ids = pl.Series(["acct-1", "acct-2", "acct-1", "x"])
    assert shard_of(ids, 1).to_list() == [0, 0, 0, 0]
    three = shard_of(ids, 3).to_list()
    assert three[0] == three[2] and all(0 <= s < 3 for s in three)
    # kafka-python's producer partitioner for the same key on a topic of 3 partitions
    assert three == [DefaultPartitioner().partition("t", a, a.encode(), None, None, _Topic(3)) for a in ids]


class _Topic:
    """The cluster metadata the partitioner reads: one topic of ``n`` partitions."""

    def __init__(self, n: int) -> None:
        self.n = n

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))

    available_partitions_for_topic = partitions_for_topic


def test_account_stages_on_shards_raise_the_single_engines_alerts(tmp_path: Path) -> None:
    simulate(tmp_path, 1.0, ROOM_SEED, scale=ROOM_SCALE, params=room_params())
    events = tmp_path / "events.parquet"
    lag = EngineSettings().model_copy(update={"context_lag": True})
    build = partial(build_engine, ROOT / "rules", settings=lag)
    replay([events], build(), tmp_path / "single.jsonl")
    single = _lines(tmp_path / "single.jsonl")
    assert b'"evidence:room"' in (tmp_path / "single.jsonl").read_bytes(), "no room: the day proves nothing"
    for k in (2, 3):
        cluster, shards = replay_split(events, build, k, tmp_path / f"k{k}")
        union = _lines(cluster, *shards)
        assert _ids(union) == _ids(single)
        assert union == single
        assert sum(bool(p.read_text()) for p in shards) >= 2  # the accusations are spread over the shards
        assert all('"kind":"cluster"' not in line for line in _lines(*shards))
        assert all('"kind":"account"' not in line for line in _lines(cluster))
    # an account stage that reads the population from its own accounts' state, not the published one
    local = []
    for i, path in enumerate(split_events(events, 2, tmp_path)):
        engine = build(observers=Observers())
        engine.stage = "account"
        replay([path], engine, tmp_path / f"local-{i}.jsonl")
        local.append(tmp_path / f"local-{i}.jsonl")
    union = _lines(tmp_path / "k2" / "cluster.jsonl", *local)
    assert union != single


def test_a_split_replay_refuses_an_engine_without_the_lag(tmp_path: Path) -> None:
    """Without ``context_lag`` an account stage reads the population from its own shard and would give
    other alerts than the single engine, silently (the last part of the test above): refused first."""
    build = partial(build_engine, ROOT / "rules", settings=EngineSettings())
    with pytest.raises(ValueError, match="context_lag"):
        replay_split(tmp_path / "events.parquet", build, 2, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_the_rule_guard_reads_the_populations_counts_a_tick_late(tmp_path: Path) -> None:
    """Under the lag the guard demotes a rule from the tick after it fired on too much of the whole
    population (``runaway.guard_late``): the account stages sum their counts (``Publication``) and demote
    as the single engine does. A shard holds too few accounts per tick to reach ``min_subjects`` alone:
    stages reading only their own counts never demote, and raise other alerts."""
    simulate(tmp_path, 1.0, ROOM_SEED, scale=ROOM_SCALE, params=room_params())
    events = tmp_path / "events.parquet"
    guard = {"min_subjects": 15, "max_fire_share": 0.1}  # ~18 accounts a tick; 3 of 20 at one tick
    lag = EngineSettings().model_copy(update={"context_lag": True})
    lag = lag.model_copy(update={"rule_guard": lag.rule_guard.model_copy(update=guard)})
    build = partial(build_engine, ROOT / "rules", settings=lag)
    engine = build()
    replay([events], engine, tmp_path / "single.jsonl")
    single = _lines(tmp_path / "single.jsonl")
    assert engine.stats.demoted, "the guard never fired: the day proves nothing"
    for k in (2, 3):
        cluster, shards = replay_split(events, build, k, tmp_path / f"k{k}")
        assert _lines(cluster, *shards) == single
    # the same stages, each demoting on its own counts only (no summed counts: ``on_guard`` None)
    wire = Publication()
    cluster = build(observers=wire.observers())
    cluster.stage = "cluster"
    replay([events], cluster, tmp_path / "own-cluster.jsonl")
    own = [tmp_path / "own-cluster.jsonl"]
    for i, path in enumerate(split_events(events, 2, tmp_path)):
        reads = Observers(on_context=Published(wire.contexts), on_models=Published(wire.models))
        stage = build(observers=reads)
        stage.stage = "account"
        assert stage.observers.on_guard is None
        replay([path], stage, tmp_path / f"own-{i}.jsonl")
        own.append(tmp_path / f"own-{i}.jsonl")
    assert _lines(*own) != single
