"""The two-stage split, replayed (issue 13 item 3): account stages on shards of accounts, one cluster stage.

Under ``EngineSettings.context_lag`` an account verdict reads other accounts only through the tick's
``PopulationContext`` (``window/context.py``). So the accounts can be sharded by a stable hash of
``account_id`` (Kafka's default partitioner: murmur2, positive, mod K), each shard replayed by its own
engine in ``stage="account"`` fed only its accounts' events and raising account verdicts only, reading
the population only from the contexts that the cluster stage (one engine in ``stage="cluster"``, fed
every event, raising cluster verdicts only) published for each tick, as bytes. The union of their
alerts is the single engine's with the lag on (``tests/test_shards.py``).

The rule guard reads counts a tick late the same way (``runaway.guard_late``): each account stage's
counts per tick (accounts evaluated, accounts each rule fires on), summed over the stages, decide the
demotions from the next tick on. A shard at tick t needs every other shard's counts of the ticks before
t, which stage after stage have not run yet; the counts depend on no demotion, so a first pass of the
account stages publishes them (``counting``) and the second reads their sums (``readers``).

This module does it in one process, stage after stage: the cluster stage first, recording every
context's bytes, then each shard, counting, then each shard again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl
from kafka.partitioner import murmur2

from detector.detect.runaway import COUNT_SCHEMA
from detector.engine import EngineFactory, Observers
from detector.runtime.replay import replay
from detector.window.context import PopulationContext, Published


def shard_of(account_ids: pl.Series, k: int) -> pl.Series:
    """Each account's shard: Kafka's default partition for the key ``account_id`` among ``k``."""
    unique = account_ids.unique()
    shards = [(murmur2(a.encode()) & 0x7FFFFFFF) % k for a in unique.to_list()]
    table = pl.DataFrame({"account_id": unique, "_shard": pl.Series(shards, dtype=pl.Int64)})
    return account_ids.to_frame("account_id").join(table, on="account_id", how="left")["_shard"]


@dataclass
class Publication:
    """The cluster stage's contexts as bytes, per kind and ``as_of`` (what a compacted topic holds)."""

    contexts: dict[datetime, bytes] = field(default_factory=dict)
    models: dict[datetime, bytes] = field(default_factory=dict)
    #: the account stages' rule-guard counts per tick, every stage's rows (``runaway.COUNT_SCHEMA``)
    counts: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=COUNT_SCHEMA))

    def observers(self) -> Observers:
        """The cluster stage's: keep each context's bytes, hand on the context itself."""

        def keep(book: dict[datetime, bytes]):  # type: ignore[no-untyped-def]
            def relay(ctx: PopulationContext) -> PopulationContext:
                book[ctx.as_of] = ctx.to_bytes()
                return ctx

            return relay

        return Observers(on_context=keep(self.contexts), on_models=keep(self.models))

    def readers(self) -> Observers:
        """An account stage's: it builds no context, it reads the published ones."""

        return Observers(
            on_context=Published(self.contexts), on_models=Published(self.models), on_guard=self.summed
        )

    def counting(self) -> Observers:
        """An account stage's first pass: it reads the contexts and publishes its guard counts."""
        return Observers(
            on_context=Published(self.contexts), on_models=Published(self.models), on_guard=self.keep
        )

    def keep(self, local: pl.DataFrame) -> pl.DataFrame:
        """Add a stage's counts; the stage's own go on (its first pass raises no alert anyone reads)."""
        self.counts = pl.concat([self.counts, local])
        return local

    def summed(self, local: pl.DataFrame) -> pl.DataFrame:
        """Every stage's counts through the last tick of ``local`` (``first_runaways`` sums them)."""
        return self.counts.filter(pl.col("tick_end") <= local["tick_end"].max())


def split_events(events: Path, k: int, work: Path) -> list[Path]:
    """``events`` (Parquet) written as ``k`` shard files by ``shard_of`` the account id."""
    frame = pl.read_parquet(events)
    shard = shard_of(frame["account_id"], k)
    out = []
    for i in range(k):
        path = work / f"shard-{i}.parquet"
        frame.filter(shard == i).write_parquet(path)
        out.append(path)
    return out


def replay_split(events: Path, build: EngineFactory, k: int, work: Path) -> tuple[Path, list[Path]]:
    """Replay ``events`` as one cluster stage and ``k`` account stages (module docstring), in this
    process; the cluster stage's alerts file and each shard's."""
    wire = Publication()
    cluster = build(observers=wire.observers())
    if not cluster.settings.context_lag:  # else each shard reads the population of its own accounts
        raise ValueError(
            "a split replay needs the engine's context_lag (DETECTOR_CONTEXT_LAG=true): without it an "
            "account stage reads other accounts from its own shard, not from the published contexts"
        )
    work.mkdir(parents=True, exist_ok=True)
    cluster.stage = "cluster"
    replay([events], cluster, work / "cluster.jsonl")
    paths = split_events(events, k, work)
    for i, path in enumerate(paths):
        engine = build(observers=wire.counting())
        engine.stage = "account"
        replay([path], engine, work / f"count-{i}.jsonl")
    shards = []
    for i, path in enumerate(paths):
        engine = build(observers=wire.readers())
        engine.stage = "account"
        replay([path], engine, work / f"account-{i}.jsonl")
        shards.append(work / f"account-{i}.jsonl")
    return work / "cluster.jsonl", shards
