"""Window state: the only code that mutates. Everything is a polars frame; updates are batch-wise.

Tables (all keyed by event time, bounded by eviction at the watermark):

- ``buckets``: one row per (account, tick bucket) with additive counters (requests, tokens, per-signal
  counts, inter-arrival gap sums). Window features are sums over buckets, so a 24 h window costs
  96 rows per busy account at a 15-minute tick.
- ``templates``: (account, bucket, template_fp) -> requests, for template concentration.
- ``sheets``: (account, bucket) -> the smallest text hash of its extraction requests (``sheets.py``).
- ``openers``: (account, bucket) -> the smallest text hash of its tool-heavy session openers, its
  tool-heavy turns and openers (``openers.py``).
- ``ids``: account id -> the 32-bit code buckets, templates and keys store instead (``compact.py``;
  readers get rows with the id back from ``bucket_rows``, ``template_rows`` and ``key_rows``).
- ``accounts``: one row per account: first/last seen, last event time (for gaps), sign-up time, tier.
- ``keys``: (account, family, key) -> last seen and uses: the linkage material, as codes; ``key_names``
  holds each (family, key) once (``compact.py``; readers get ``key_rows``).
- ``seen``: request ids inside the de-duplication horizon, as 64-bit hashes (``ids.py``), a list per tick.
- ``models``: model -> first seen, to tell a newly launched model from an established one.

Their column layouts and the linkage key expressions are in ``tables.py``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from detector.intel.hashing import PartnerIndex
from detector.schema import UTC_US
from detector.settings import StateCaps
from detector.window.caps import cap_tables
from detector.window.compact import assign, fit_rows, merge_rows, owned, rows_of, upgrade
from detector.window.ids import ID_HASH, id_hashes
from detector.window.keycodes import add_key_uses, held_only, key_rows
from detector.window.openers import OPENER_SCHEMA, OPENER_STORE, merge_openers, opener_rows
from detector.window.sheets import SHEET_SCHEMA, SHEET_STORE, merge_sheets, sheet_rows
from detector.window.tables import (
    ACCOUNT_AGGS,
    ACCOUNT_SCHEMA,
    BUCKET_SCHEMA,
    BUCKET_STORE,
    GAP_SUM,
    GAP_SUMSQ,
    IDS_SCHEMA,
    KEY_NAMES_SCHEMA,
    KEY_SCHEMA,
    KEY_STORE,
    MAX_GAP_S,
    MODEL_SCHEMA,
    SEEN_SCHEMA,
    SIGNAL_COUNTS,
    TABLES,
    TEMPLATE_SCHEMA,
    TEMPLATE_STORE,
    TOKEN_SUMS,
    link_key_exprs,
    merge_keys,
)

__all__ = [
    "ACCOUNT_SCHEMA",
    "BUCKET_SCHEMA",
    "GAP_SUM",
    "GAP_SUMSQ",
    "KEY_SCHEMA",
    "MODEL_SCHEMA",
    "SIGNAL_COUNTS",
    "TABLES",
    "TEMPLATE_SCHEMA",
    "WindowState",
    "link_key_exprs",
    "merge_keys",
]


@dataclass
class WindowState:
    """All mutable engine state (see module docstring)."""

    buckets: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=BUCKET_STORE))
    templates: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TEMPLATE_STORE))
    accounts: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ACCOUNT_SCHEMA))
    keys: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=KEY_STORE))
    seen: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SEEN_SCHEMA))
    models: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MODEL_SCHEMA))
    ids: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=IDS_SCHEMA))
    key_names: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=KEY_NAMES_SCHEMA))
    sheets: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SHEET_STORE))
    openers: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=OPENER_STORE))
    stream_start: datetime | None = None
    _appends: int = 0
    #: A partner's indicators (configuration, not checkpointed): matching values add ``shared_intel`` keys.
    partner: PartnerIndex | None = None

    # ---------------------------------------------------------------------------------------------
    def seen_hashes(self) -> pl.Series:
        """Every request id hash inside the de-duplication horizon."""
        return self.seen.get_column(ID_HASH).explode().drop_nulls()

    def drop_seen(self, events: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """Remove events whose request id was already counted; remember the new ones, per ``_tick``."""
        hashed = events.with_columns(id_hashes(events.get_column("request_id")))
        # one filter: an id's rows are all counted already or all fresh, so its first row over the batch
        # is its first fresh row (what ``unique(keep="first", maintain_order=True)`` after the filter
        # kept, at a third of the CPU: no second copy of every column, issue 13)
        fresh = hashed.filter(
            ~pl.col(ID_HASH).is_in(self.seen_hashes().implode()) & pl.col("request_id").is_first_distinct()
        )
        dup = events.height - fresh.height
        per_tick = fresh.group_by(pl.col("_tick").alias("tick"), maintain_order=True).agg(ID_HASH)
        self.seen = pl.concat([self.seen, per_tick.cast(SEEN_SCHEMA)])
        return fresh.drop(ID_HASH), dup

    def drop_counted(self, batch: pl.DataFrame, closed_before: datetime) -> tuple[pl.DataFrame, int]:
        """Remove events already counted in a closed tick (a partition read again from an older offset).

        Every counted event lies before ``closed_before`` (the end of the last closed tick), so only a
        late event can repeat one: a batch without late events costs one filter. A repeat lies in a
        tick that ends after the earliest late event."""
        late = batch.filter(pl.col("ts") < closed_before)
        if late.height == 0:
            return batch, 0
        counted = (
            self.seen.filter(pl.col("tick") > late["ts"].min()).get_column(ID_HASH).explode().drop_nulls()
        )
        fresh = batch.filter(~id_hashes(batch.get_column("request_id")).is_in(counted.implode()))
        return fresh, batch.height - fresh.height

    def mark_new_models(self, events: pl.DataFrame, warmup: timedelta, new_for: timedelta) -> pl.DataFrame:
        """Add ``is_new_model``: the model was first seen after the warm-up and recently.

        ``events`` carry ``_tick`` (the tick each event is counted in). A model's first-seen time for an
        event is the earliest time seen up to and including that event's tick, so closing many ticks
        at once marks exactly what closing them one by one would.
        """
        if self.stream_start is None and events.height:
            self.stream_start = events["ts"].min()  # type: ignore[assignment]
        per_tick = (
            events.group_by("model", "_tick")
            .agg(pl.col("ts").min().alias("_tick_first"), pl.col("ts").max().alias("last_seen"))
            .join(self.models.drop("last_seen"), on="model", how="left")
            .sort("model", "_tick")
            .with_columns(
                pl.min_horizontal(pl.col("_tick_first").cum_min().over("model"), pl.col("first_seen")).alias(
                    "first_seen"
                )
            )
        )
        self.models = (
            pl.concat([self.models, per_tick.select(MODEL_SCHEMA.keys())])
            .group_by("model")
            .agg(pl.col("first_seen").min(), pl.col("last_seen").max())
            .sort("model")
        )
        assert self.stream_start is not None or events.height == 0
        start = self.stream_start
        established_until = (start + warmup) if start is not None else None
        return (
            events.join(per_tick.select("model", "_tick", "first_seen"), on=["model", "_tick"], how="left")
            .with_columns(
                (
                    (pl.col("first_seen") > pl.lit(established_until, dtype=UTC_US))
                    & (pl.col("ts") - pl.col("first_seen") <= pl.lit(new_for))
                )
                .fill_null(False)
                .alias("is_new_model")
            )
            .drop("first_seen")
        )

    def add(self, events: pl.DataFrame, bucket_every: timedelta, signup_burst: timedelta) -> pl.DataFrame:
        """Fold enriched, de-duplicated events (with ``_tick``, sorted by tick then time) into the tables.

        Returns the linkage keys the events used, per tick: (account_id, family, key, _tick, last_seen,
        uses), so the link stage can see the keys as they stood at any tick of the batch.
        """
        if events.height == 0:
            return pl.DataFrame(schema={**KEY_SCHEMA, "_tick": UTC_US})
        every = f"{int(bucket_every.total_seconds())}s"
        prev = self.accounts.select("account_id", pl.col("last_seen").alias("_prev"))
        ev = (
            events.join(prev, on="account_id", how="left")
            .sort("account_id", "_tick", "ts", maintain_order=True)
            .with_columns(
                pl.col("ts").dt.truncate(every).alias("bucket"),
                # the gap to the newest earlier event of the account (this batch or before it). A tick is a
                # non-decreasing function of event time, so rows sorted by (account, tick, time) are in
                # time order within each account: the newest earlier event is the previous row of the
                # same account, no windowed maximum needed
                (
                    pl.col("ts")
                    - pl.max_horizontal(
                        pl.when(pl.col("account_id") == pl.col("account_id").shift(1)).then(
                            pl.col("ts").shift(1)
                        ),
                        pl.col("_prev"),
                    )
                )
                .dt.total_microseconds()
                .alias("_gap"),
            )
            .with_columns(
                pl.when(pl.col("_gap") <= int(MAX_GAP_S * 1e6))
                .then(pl.col("_gap"))
                .otherwise(None)
                .alias("_gap")
            )
        )
        self.ids, codes = assign(self.ids, ev.get_column("account_id"))
        new_buckets = (
            ev.group_by("account_id", "bucket")
            .agg(
                pl.len().cast(pl.UInt32).alias("requests"),
                *[pl.col(c).fill_null(0).sum().alias(c) for c in TOKEN_SUMS],
                *[
                    pl.col(src).fill_null(False).sum().cast(pl.UInt32).alias(dst)
                    for dst, src in SIGNAL_COUNTS.items()
                ],
                pl.col("_gap").count().cast(pl.UInt32).alias("gap_n"),
                pl.col("_gap").sum().alias(GAP_SUM),
                (pl.col("_gap").cast(pl.Int128) ** 2).sum().alias(GAP_SUMSQ),
            )
            .join(codes, on="account_id")
        )
        self.buckets = pl.concat([self.buckets, fit_rows(new_buckets, BUCKET_STORE)])
        new_tpl = (
            ev.filter(pl.col("template_fp").is_not_null())
            .group_by("account_id", "bucket", "template_fp")
            .agg(pl.len().cast(pl.UInt32).alias("requests"))
            .join(codes, on="account_id")
        )
        self.templates = pl.concat([self.templates, fit_rows(new_tpl, TEMPLATE_STORE)])
        self.sheets = pl.concat([self.sheets, sheet_rows(ev, codes)])
        self.openers = pl.concat([self.openers, opener_rows(ev, codes)])
        acc = ev.group_by("account_id").agg(*ACCOUNT_AGGS)
        # only accounts in this batch change: re-aggregate those rows, keep the rest
        seen_now = pl.col("account_id").is_in(acc["account_id"].implode())
        updated = (
            pl.concat([self.accounts.filter(seen_now), acc.select(ACCOUNT_SCHEMA.keys())])
            .group_by("account_id", maintain_order=True)
            .agg(
                pl.col("first_seen").min(),
                pl.col("last_seen").max(),
                pl.col("created_at").drop_nulls().last(),
                pl.col("tier").drop_nulls().last(),
                pl.col("org_id").drop_nulls().last(),
                pl.col("verified").drop_nulls().last(),
            )
        )
        self.accounts = pl.concat([self.accounts.filter(~seen_now), updated]).sort("account_id")

        key_exprs = link_key_exprs(signup_burst)
        # one column per family, named after it; events of one account and tick mostly repeat the same
        # keys, so each combination is counted once before the families are spread into rows
        families = list(key_exprs)
        combos = (
            ev.select("account_id", "ts", "_tick", *[key_exprs[f].alias(f) for f in families])
            .group_by("account_id", "_tick", *families)
            .agg(pl.col("ts").max(), pl.len().cast(pl.UInt32).alias("n"))
        )
        keyed = combos.unpivot(
            index=["account_id", "_tick", "ts", "n"], variable_name="family", value_name="key"
        )
        log = (
            keyed.filter(pl.col("key").is_not_null())
            .group_by("account_id", "family", "key", "_tick")
            .agg(pl.col("ts").max().alias("last_seen"), pl.col("n").sum().alias("uses"))
        )
        if self.partner is not None and len(self.partner):
            # a partner's indicator naming one of these values is one more key: ``shared_intel``
            log = pl.concat([log, self.partner.match(log)])
        self.ids, self.key_names, self.keys = add_key_uses(self.ids, self.key_names, self.keys, log)
        self._appends += 1
        if self._appends % 8 == 0:
            self.compact()
        return log.select(*KEY_SCHEMA.keys(), "_tick")

    def compact(self) -> None:
        """Merge duplicate (account, bucket) rows appended by successive ticks and late events."""
        self.buckets = merge_rows(self.buckets, BUCKET_STORE)
        self.templates = merge_rows(self.templates, TEMPLATE_STORE)
        self.sheets = merge_sheets(self.sheets)
        self.openers = merge_openers(self.openers)

    def bucket_rows(
        self, accounts: pl.Series | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> pl.DataFrame:
        """Buckets (``BUCKET_SCHEMA``: the account id, 32-bit counts) of ``accounts`` (None: all) in
        [since, until); an (account, bucket) may take several rows: readers sum them."""
        return rows_of(self.buckets, self.ids, BUCKET_SCHEMA, accounts, since, until)

    def template_rows(
        self, accounts: pl.Series | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> pl.DataFrame:
        """Template counts (``TEMPLATE_SCHEMA``) of ``accounts`` (None: all) in [since, until)."""
        return rows_of(self.templates, self.ids, TEMPLATE_SCHEMA, accounts, since, until)

    def sheet_rows(
        self, since: datetime | None = None, until: datetime | None = None, accounts: pl.Series | None = None
    ) -> pl.DataFrame:
        """Sheet rows (``SHEET_SCHEMA``) of ``accounts`` (None: every account's) in [since, until)."""
        return rows_of(self.sheets, self.ids, SHEET_SCHEMA, accounts, since, until)

    def opener_rows(self, since: datetime | None = None, until: datetime | None = None) -> pl.DataFrame:
        """Every account's opener rows (``OPENER_SCHEMA``) in [since, until)."""
        return rows_of(self.openers, self.ids, OPENER_SCHEMA, None, since, until)

    def key_rows(self, keys: pl.DataFrame | None = None) -> pl.DataFrame:
        """The key table, or stored rows ``keys`` of it, as readers get it (``KEY_SCHEMA``)."""
        return key_rows(self.keys if keys is None else keys, self.ids, self.key_names)

    def evict(
        self,
        watermark: datetime,
        keep_buckets: timedelta,
        link: timedelta,
        idle: timedelta,
        dedup: timedelta,
        caps: StateCaps | None = None,
    ) -> Counter[str]:
        """Drop everything the windows can no longer see, then cap each table by count.

        Returns the rows dropped per ``table/cause`` (cause ``age``: event time; ``cap``: count).
        Over a cap, a table keeps its most recent rows by event time (``StateCaps`` says what that
        costs per table); an account dropped by the cap takes its buckets, templates and keys along.
        """
        before = {t: getattr(self, t).height for t in TABLES}
        self.buckets = self.buckets.filter(pl.col("bucket") >= watermark - keep_buckets)
        self.templates = self.templates.filter(pl.col("bucket") >= watermark - keep_buckets)
        self.sheets = self.sheets.filter(pl.col("bucket") >= watermark - keep_buckets)
        self.openers = self.openers.filter(pl.col("bucket") >= watermark - keep_buckets)
        self.keys = self.keys.filter(pl.col("last_seen") >= watermark - link)
        self.accounts = self.accounts.filter(pl.col("last_seen") >= watermark - idle)
        # a tick's ids go once its end is past the horizon: the horizon rounded up to whole ticks
        self.seen = self.seen.filter(pl.col("tick") > watermark - dedup)
        # a model unseen for the idle span is forgotten; if it comes back it counts as new again
        self.models = self.models.filter(pl.col("last_seen") >= watermark - idle)
        dropped: Counter[str] = Counter()
        for t in TABLES:
            dropped[f"{t}/age"] = before[t] - getattr(self, t).height
        if caps is not None:
            dropped.update(cap_tables(self, caps))
        # an id or a key name goes with the last row that holds its code (``keycodes.held_only``)
        self.ids, self.key_names = held_only(
            self.ids, self.key_names, self.keys, self.buckets, self.templates
        )
        for t in ("ids", "key_names"):
            dropped[f"{t}/age"] = before[t] - getattr(self, t).height
        for t in TABLES:  # no id or key name kept pins the buffer of the chunk it came from
            setattr(self, t, owned(getattr(self, t)))
        return +dropped

    # ---------------------------------------------------------------------------------------------
    def size_bytes(self) -> dict[str, int]:
        """Estimated bytes per table (for the state-size metric and the memory-per-account report)."""
        return {name: int(getattr(self, name).estimated_size()) for name in TABLES}

    def save(self, directory: Path) -> None:
        """Write every table as Parquet (a checkpoint), and the stream's start."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            getattr(self, name).write_parquet(directory / f"{name}.parquet")
        start = pl.DataFrame({"stream_start": [self.stream_start]}, schema={"stream_start": UTC_US})
        start.write_parquet(directory / "start.parquet")

    @classmethod
    def load(cls, directory: Path) -> WindowState:
        """Read a checkpoint written by ``save``."""
        st = cls()
        read = {
            t: pl.read_parquet(directory / f"{t}.parquet")
            for t in TABLES
            if (directory / f"{t}.parquet").exists()
        }
        for name, frame in upgrade({t: getattr(st, t) for t in TABLES} | read).items():
            setattr(st, name, frame)
        start = directory / "start.parquet"
        if start.exists():
            st.stream_start = pl.read_parquet(start)["stream_start"][0]
        elif st.models.height:  # older checkpoints: the earliest model first-seen time
            st.stream_start = st.models["first_seen"].min()  # type: ignore[assignment]
        return st
