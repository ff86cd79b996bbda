"""Engine and runtime settings (pydantic-settings: env vars ``DETECTOR_*`` and an optional file)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector import defaults
from detector.contracts import LinkFamily
from detector.evidence_settings import EvidenceSettings

#: Bounds: every window and interval is positive; warm-up and lateness may be zero; shares lie in 0..1.
_ZERO = timedelta(0)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SHORT_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def _duration(value: object) -> object:
    """Durations from variables: ``900`` (seconds) and ``15m`` / ``2h`` / ``7d`` besides ``00:15:00``
    and ISO 8601 ``PT15M`` (which pydantic reads itself)."""
    if isinstance(value, str) and (m := _SHORT_DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])
    return value


class WindowSettings(BaseModel):
    """Event-time windows and the tick at which the engine evaluates."""

    #: The engine evaluates features, links and rules each time event time crosses a tick boundary.
    tick: timedelta = Field(default=timedelta(minutes=15), gt=_ZERO)
    #: Clusters are rebuilt and scored at tick boundaries that are multiples of this (linkage moves slowly).
    cluster_every: timedelta = Field(default=timedelta(hours=1), gt=_ZERO)
    short: timedelta = Field(default=timedelta(hours=1), gt=_ZERO)
    long: timedelta = Field(default=timedelta(hours=24), gt=_ZERO)
    #: Linkage keys (shared cards, IPs, fingerprints...) stay live this long after last use.
    link: timedelta = Field(default=timedelta(days=7), gt=_ZERO)
    #: Request ids are remembered this long (de-duplication: a gateway's retries and Kafka redeliveries
    #: arrive within minutes). A duplicate older than this is counted again: at 24 h (``long``) its
    #: bucket is outside every window still to be evaluated, so it only adds a use to its linkage keys
    #: and one to the events counted. Each day kept costs 8 bytes a request (docs/benchmarks.md).
    dedup: timedelta = Field(default=timedelta(hours=24), gt=_ZERO)
    #: An account with no event for this long is evicted from state.
    account_idle: timedelta = Field(default=timedelta(days=7), gt=_ZERO)
    #: Models seen within this long of the stream's start are "established"; later ones are new.
    model_warmup: timedelta = Field(default=timedelta(hours=6), ge=_ZERO)
    #: A model counts as newly launched for this long after it is first seen.
    new_model: timedelta = Field(default=timedelta(hours=72), gt=_ZERO)
    #: Accounts created within this span of each other share a sign-up burst key.
    signup_burst: timedelta = Field(default=timedelta(minutes=30), gt=_ZERO)
    #: An alert episode with no verdict for this long closes; a later verdict opens a new episode (new id).
    episode_idle: timedelta = Field(default=timedelta(days=7), gt=_ZERO)
    #: Events older than the watermark minus this are late (counted, folded into the current tick).
    allowed_lateness: timedelta = Field(default=timedelta(minutes=5), ge=_ZERO)

    @field_validator("*", mode="before")
    @classmethod
    def _short_durations(cls, value: object) -> object:
        return _duration(value)

    @model_validator(mode="after")
    def _ordered(self) -> WindowSettings:
        if self.cluster_every < self.tick:
            raise ValueError(f"cluster_every ({self.cluster_every}) must be at least tick ({self.tick})")
        if self.short > self.long:
            raise ValueError(f"short ({self.short}) must not exceed long ({self.long})")
        if self.dedup < self.long:  # a copy past the horizon would land in a window still evaluated
            raise ValueError(f"dedup ({self.dedup}) must be at least long ({self.long})")
        return self


class EventTimeSettings(BaseModel):
    """Guards on event time: no single record may move the clock (``detector.window.eventtime``)."""

    #: An event more than this ahead of its partition's recent events (or of the ingest clock, in the
    #: daemon) is dead-lettered as ``future_timestamp``. One hour: gateways stamp events within seconds
    #: of arrival and Kafka partitions interleave by well under a minute, while the engine's windows
    #: (a 15-minute tick, 5 minutes of lateness) would be skipped by anything further ahead.
    future_skew: timedelta = timedelta(hours=1)
    #: The partition's recent events: the last this many event times it delivered, with the batch's.
    recent_events: int = 1000
    #: Sorted, they fall into runs split by gaps over ``future_skew``; the newest run holding at least
    #: this many events is where the partition's time is. A later, smaller run is in the future. Five:
    #: one forged copy (or four) cannot move the clock, while the first events after a real jump in
    #: time (a gap in the logs, a quiet hour) are dead-lettered only until five have arrived.
    min_support: int = 5
    #: Events outside [plausible_from, plausible_until) are rejected as ``implausible_timestamp``
    #: (years 0001 and 9999 are valid RFC 3339 but no gateway log holds them).
    plausible_from: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    plausible_until: datetime = datetime(2200, 1, 1, tzinfo=UTC)
    #: Late events (older than the last closed tick) wait for the next tick to close; more than this
    #: waiting means the clock is stuck, so they are folded into the last closed tick at once (counted)
    #: and readiness fails until a tick closes. 200,000 is ~10 minutes of the densest measured stream.
    max_late_events: int = 200_000


class StateCaps(BaseModel):
    """Row caps per state table, on top of eviction by event time (``WindowState.evict``).

    Eviction by event time bounds the tables for a steady population; the caps bound them against a
    flood of new ids (a sign-up storm, forged request ids). Over a cap a table keeps its newest rows by
    event time: dropped accounts (least recently seen first) take their buckets, templates, sheet rows
    and keys; dropped ``seen`` ids shorten the de-duplication horizon (a replayed duplicate older than
    it counts twice); a dropped model counts as new if it comes back. Every dropped row is counted
    (``detector_state_evicted_rows_total{table, cause}``). ``benchmarks/state_memory.py`` measured
    580 bytes of state per account for 1M accounts in one hour (554 MB; docs/robustness.md).
    """

    accounts: int = 4_000_000
    #: ~24 one-hour-active buckets for each of 4M accounts, or 96 (a full day) for 1M
    buckets: int = 100_000_000
    templates: int = 100_000_000
    #: at most one row per (account, bucket) holding a reasoning request (``window/sheets.py``)
    sheets: int = 100_000_000
    #: ... and one holding a tool-heavy request (``window/openers.py``)
    openers: int = 100_000_000
    keys: int = 40_000_000
    #: request ids inside the de-duplication horizon (7 days of ~26 requests per account per day for
    #: 1M accounts is 182M: the horizon shortens first under the densest traffic)
    seen: int = 100_000_000
    models: int = 10_000


class RuleGuardSettings(BaseModel):
    """Run-time guard rail for enforce rules (``detector.detect.runaway``)."""

    #: An enforce rule firing on more than this share of one tick's evaluated subjects is demoted to
    #: shadow. Half: attackers are a small minority of any real population; a rule accusing most of
    #: it is broken (the issue's ``requests_24h >= 0`` fired on all 1,633 honest accounts).
    max_fire_share: float = 0.5
    #: ...only in ticks that evaluated at least this many subjects (a quiet tick of three accounts,
    #: two of them attackers, is no evidence of a broken rule).
    min_subjects: int = 200


class LinkSettings(BaseModel):
    """How linkage keys become cluster edges."""

    #: Keys per account and family kept for composite linking (most used first).
    keys_per_family: int = Field(default=3, ge=1)
    #: A key used by more than this share of active accounts (and more than ``common_min_accounts``)
    #: is common (a popular SDK, a big NAT) and links nobody.
    common_share: float = Field(default=0.2, gt=0, le=1)
    common_min_accounts: int = Field(default=50, ge=1)
    #: A composite key (two families' keys held together) links its holders only when they are at least
    #: this share of the holders of each key (a popular browser plus a popular prompt is a coincidence;
    #: a client build plus a template skeleton held by the same 60 accounts is not).
    min_overlap: float = Field(default=0.5, gt=0, le=1)
    #: ...or when they are most holders of the rarer key and the other key is held by at most this share
    #: of all accounts (a prefix nested in a reseller that only one network uses).
    nested_max_share: float = Field(default=0.05, ge=0, le=1)
    #: Families whose key may hold a nested one that way: relationships an operator sets up on purpose.
    #: Not templates (a popular prompt) or address prefixes (a neighbourhood).
    nest_families: tuple[LinkFamily, ...] = ("payment", "reseller", "client", "sysprompt")
    #: ... but a key of these families is software that a public tool makes common among strangers
    #: (curl, an SDK release: a hundred holders with no relationship), so a group nested in it links
    #: only when it holds at least ``nested_min_accounts``: two of curl's holders who also share a
    #: casual template or a sign-up half hour are a coincidence. Such a pair joined a hackathon and a
    #: company's card group into one "farm" of 179 accounts (issue 17, round 10). Five: the smallest
    #: group a cluster rule accuses (``cohort_min_accounts``). A farm's private build still links a
    #: pair that is most holders of each key (``min_overlap``) and its sign-up cohorts
    #: (``window.cohorts``), but no longer a pair nested in it: on dev draws 270-285 two campaign
    #: accounts (of 1,616) joined their campaign's cluster only that way (docs/detection.md, round 10).
    #: Cards, resellers and system prompts name a relationship or a private artefact: a campaign's
    #: early pairs nest in them.
    #: Two keys of families outside ``nest_families`` (an address prefix, a prompt skeleton, a sign-up
    #: half hour: none names a relationship) link at least this many too: a pair of strangers on a
    #: carrier's /24 who both sent a popular opener joined a hackathon to a coding tool's users (round 15).
    public_nest_families: tuple[LinkFamily, ...] = ("client",)
    nested_min_accounts: int = Field(default=5, ge=2)
    #: Families that link on their own, without a second family agreeing.
    strong_families: tuple[LinkFamily, ...] = ("payment",)
    #: Families a reseller tenant (a router: its sub-accounts under its one org) sets for all its
    #: sub-accounts: its own infrastructure, which links none of them (``window.link``).
    tenant_families: tuple[LinkFamily, ...] = ("reseller", "payment", "ip", "client")
    #: ... but a key of these families held mostly by some of a tenant's sub-accounts links them through
    #: the tenant's reseller id, whatever the tenant's size: a private system prompt that the router's
    #: other customers do not hold is a group inside it (issue 17, round 7). Not templates or sign-up
    #: windows: among a router's many customers those are popular prompts and coincidences.
    tenant_nested_families: tuple[LinkFamily, ...] = ("sysprompt",)
    #: A sign-up cohort (``window.cohorts``): most (``min_overlap``) of a client build's holders, and at
    #: least ``cohort_min_accounts`` of them, opened their accounts within this span of each other: they
    #: link as one group. An honest build's users arrive over months and years; an operator opens its
    #: farm's accounts over days (the link window: what linkage remembers of them). At least five: the
    #: smallest group a cluster rule accuses; three holders of a niche SDK in one week are a coincidence
    #: a hackathon makes (a small world's casual users and 60 participants: tests/test_hackathon.py).
    signup_cohort: timedelta = Field(default=timedelta(days=7), gt=_ZERO)
    cohort_min_accounts: int = Field(default=5, ge=2)
    #: ... unless most of the cohort opened within this span (one sitting: a hackathon's registration
    #: desk, a startup's engineers in one afternoon): the sitting explains the shared window (round 9).
    signup_sitting: timedelta = Field(default=timedelta(hours=8), gt=_ZERO)


class EngineSettings(BaseSettings):
    """Everything the engine needs; the same object drives replay and the daemon."""

    model_config = SettingsConfigDict(env_prefix="DETECTOR_", env_nested_delimiter="__", extra="ignore")

    #: Default: the rules that ship in the package (``detector/defaults/rules``).
    rules_dir: Path = Field(default_factory=defaults.rules_dir)
    allowlist: Path | None = None
    #: None: no IP intelligence; ``default``: the snapshot that ships in the package; else a folder.
    ip_intel_dir: Path | None = None
    #: ONNX models with manifests (``<name>-v<N>.onnx``; default: the packaged ones); None: rules only.
    models_dir: Path | None = Field(default_factory=defaults.models_dir)
    #: A model raises a subject to medium on its own (no rule beside it) only where its manifest's
    #: precision, measured on the calibration block of draws at its medium threshold, is at least this:
    #: one honest subject accused per hundred accusations is the most a verdict that no rule, and so no
    #: readable reason, stands behind may cost (issue 17). Below it the model's lone hit stays a low lead.
    model_vote_precision: float = Field(default=0.99, ge=0.5, le=1.0)
    #: ... and, on a cluster, only where the cluster has at least this many accounts. The coordination
    #: axis is how many independent accounts share rare artefacts, and every cluster rule that accuses
    #: on coordination requires ``accounts >= 5`` (rules/cluster_*.yaml; the three at 3 name a content
    #: signal: logprobs, coerced traces, a partner's indicator). A model voting alone stands in for such
    #: a rule, so it needs the same group: not a bar fitted to any draw. Smaller: a low lead (issue 17).
    model_vote_min_accounts: int = Field(
        default=5, ge=1, description="fewest accounts a cluster needs for a model's lone vote to reach medium"
    )
    #: ... and coordination beyond one artefact: at least this many rare artefact families shared
    #: (``rare_artefact_families``: a private system prompt, a template skeleton, a client build), the
    #: floor of ``cluster_coordinated_farm``, the rule that accuses on coordination alone, which a model
    #: voting alone stands in for. One artefact is what a startup's engineers on their in-house build, a
    #: tool's or a tutorial's users, a router team on its tool share; the rules accuse such a group
    #: only with a content signal beside it (``cluster_coordinated_harvest``), never on its sharing
    #: (tests/test_evidence.py, ``test_one_rare_artefact_is_not_coordination``). With the floor the
    #: vote also asks the farm rules' freshness question (the ``farm_accounts`` column,
    #: ``provenance.farm_accounts``). Issue 17, round 16.
    model_vote_min_artefact_families: int = Field(
        default=2,
        ge=0,
        description="fewest rare artefact families a cluster must share for a lone model vote",
    )
    #: Account features are computed over the (account, tick) points of a pass in parts of about this
    #: many points (an account's points are never split; features are per account, so the rows are the
    #: same). Each point joins its account's 24 hours of buckets (2.6 KB a point measured: 45 MB for the
    #: 17,520 points of one pass on a 964,000-event tile) and templates: 10,000 keeps that join under
    #: ~30 MB however many accounts a pass has active (docs/benchmarks.md, Scale). The sheet test runs in
    #: the same parts (a text's holders still counted over every account; round 19).
    feature_batch_points: int = Field(default=10_000, ge=2)
    #: A prototype of issue 13's two-stage engine (docs/architecture.md, "The two-stage split"): the
    #: account verdicts read the cross-account context (a sheet text's holders, a room's template, a
    #: router team's group) as of the previous tick, as a partition-parallel account stage fed by a
    #: cluster stage would, instead of the current one; each account's own state is read at its tick.
    #: Off by default (the alerts are the same bytes); on measures what one tick of lag costs.
    context_lag: bool = False
    #: At the end of every pass over closed ticks, hand the pages Arrow's memory pool keeps unused back
    #: to the system (``detector.memory``; the alerts are the same bytes either way). Off: the pool keeps
    #: them for its next allocations, as before round 20 (docs/benchmarks.md, "Round 20").
    release_memory: bool = True
    #: Replay's read-ahead, in MB of decoded input (polars ``estimated_size``): the reader decodes the
    #: next piece (``PIECE_ROWS`` events) only while the frames it has released and the engine has not
    #: finished weigh at most this, so at most this plus one release is in flight, whatever the rate.
    #: The merge's reorder buffer (``allowed_lateness`` of events) is not counted: it is the ordering
    #: guarantee. The alerts are the same bytes at any value (docs/benchmarks.md, "Round 22").
    replay_inflight_mb: float = Field(default=64.0, gt=0, allow_inf_nan=False)
    #: The deployment's secret key on the prompt text's hash (``text_fp``), at least 16 bytes, or a file
    #: holding it (the variable wins). Unset: ``text_fp`` is the public hash, as before round 13. Set, a
    #: checkpoint holder cannot confirm a guessed prompt against the sheet and opener samples, and a farm
    #: cannot pick the decoy text that wins every bucket's sample (docs/detection.md, round 13). Never
    #: logged or stored; checkpoints keep only a check of it and refuse to load under another key.
    text_key: SecretStr | None = None
    text_key_file: Path | None = None

    @field_validator("models_dir", "allowlist", "ip_intel_dir", "text_key", "text_key_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """``DETECTOR_MODELS_DIR=`` (empty) means none: rules only, no allow-list, no IP intelligence."""
        return None if value == "" else value

    @field_validator("ip_intel_dir", mode="after")
    @classmethod
    def _default_intel(cls, value: Path | None) -> Path | None:
        return defaults.resolve_ip_intel(value)

    windows: WindowSettings = WindowSettings()
    link: LinkSettings = LinkSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    event_time: EventTimeSettings = EventTimeSettings()
    rule_guard: RuleGuardSettings = RuleGuardSettings()
    state_caps: StateCaps = StateCaps()


class AllocatorSettings(BaseSettings):
    """What the process tells polars' allocator before polars loads (``detector.memory.allocator_env``,
    run by the command line's entry): environment only, since a ``--config`` file is read after polars
    has started its jemalloc. A ``_RJEM_MALLOC_CONF`` the operator set wins over it (docs/operations.md)."""

    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    #: ``DETECTOR_JEMALLOC_CONF``: options appended to polars' own (``dirty_decay_ms:500`` and
    #: ``muzzy_decay_ms:1000`` in polars 2.1).
    #: The default hands freed pages back 0.1 s after they are freed, and at once with ``MADV_DONTNEED``
    #: instead of first with ``MADV_FREE`` (lazily freed pages still count in the RSS): about 50 MB (3-5%)
    #: off a replay's peak and a tenth off its RSS after, for 2-5% more system time (docs/benchmarks.md,
    #: "Round 20"). Empty: polars' own options alone, as before round 20.
    jemalloc_conf: str = "dirty_decay_ms:100,muzzy_decay_ms:0"
