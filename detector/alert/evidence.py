"""What an alert carries besides its verdict: reasons (rule lines, model explanations) and evidence
(features, a cluster's shared keys and links), built lazily.

Most verdicts change nothing in the alert book, so their reasons and evidence are never read. The parts
that cost something (a model explanation is one more inference; a cluster's shared-key and link
summaries are one more pass over the key table) are computed only for the verdicts that become alerts,
batched per tick by ``prepare`` before the book reads them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl

from detector.alert.explain import describe
from detector.alert.verdict import Given, Verdict
from detector.contracts import LINK_FAMILIES, Reason, Severity
from detector.detect.fusion import MODEL_PREFIX
from detector.detect.models.runtime import ModelSet
from detector.detect.rules import RuleSet
from detector.window.link import INTEL_FAMILY

#: Account features copied into an account alert's evidence.
ACCOUNT_EVIDENCE = (
    "requests_24h",
    "requests_1h",
    "cot_share_24h",
    "coercion_share_24h",
    "rubric_share_24h",
    "logprob_share_24h",
    "n_gt1_share_24h",
    "tools_heavy_share_24h",
    "new_model_share_24h",
    "hosted_ip_share_24h",
    "active_hours_24h",
    "interarrival_cv_24h",
    "template_top_share_24h",
    "account_age_days",
    "extraction_signals",
    "trusted_customer",
)
#: Cluster features copied into a cluster alert's evidence.
CLUSTER_EVIDENCE = (
    "accounts",
    "active_accounts_24h",
    "link_families",
    "requests_24h",
    "requests_per_account_24h",
    "synchrony_24h",
    "cot_share_24h",
    "coercion_share_24h",
    "logprob_share_24h",
    "tools_heavy_share_24h",
    "new_model_share_24h",
    "hosted_ip_share_24h",
    "template_top_share_24h",
    "active_hours_24h",
    "signup_spread_hours",
    "new_account_share",
    "payers",
    "orgs",
    "verified_share",
    "coordination_signals",
    "extraction_signals",
    "one_customer_explains",
    "trusted_customer",
    *(f"shared_keys_{f}" for f in (*LINK_FAMILIES, INTEL_FAMILY)),
)


class LazyReasons:
    """A verdict row's reasons; model explanations are filled in only for rows that become alerts,
    batched per model across a tick's alerts (``explain_all``), or one by one when called alone."""

    def __init__(self, models: ModelSet, row: dict[str, Any], rules: RuleSet | None = None) -> None:
        self.models = models
        self.rules = rules
        self.row = row
        self.structs: list[dict[str, Any]] = row["reasons"]

    def pending(self) -> list[str]:
        """Model rule ids whose explanation is still missing."""
        return [
            s["rule_id"]
            for s in self.structs
            if s["detail"] is None and s["rule_id"].startswith(MODEL_PREFIX)
        ]

    def fill(self, rule_id: str, detail: str | None) -> None:
        """Set one model's explanation."""
        self.structs = [{**s, "detail": detail} if s["rule_id"] == rule_id else s for s in self.structs]

    def __call__(self) -> list[Reason]:
        for rid in self.pending():
            self.fill(rid, self.models.explain_row(self.row, rid))
        return describe(self.structs, self.rules, self.row)

    @staticmethod
    def explain_all(verdicts: list[Verdict]) -> None:
        """Fill every pending model explanation of ``verdicts`` with one inference per model."""
        todo: dict[str, list[LazyReasons]] = {}
        for v in verdicts:
            if isinstance(v.reasons, LazyReasons):
                for rid in v.reasons.pending():
                    todo.setdefault(rid, []).append(v.reasons)
        for rid, items in todo.items():
            lines = items[0].models.explain_rows([r.row for r in items], rid)
            for r, line in zip(items, lines, strict=True):
                r.fill(rid, line)


def shared_keys(keys: pl.DataFrame, members: pl.DataFrame, top: int = 5) -> dict[str, dict[str, list[str]]]:
    """Per cluster: its most-shared linkage values (hashes, prefixes; never content), top per family."""
    k = (
        keys.join(members, on="account_id", how="inner")
        .filter(pl.col("family") != "signup")  # a sign-up burst is a time slot, not a shared value
        .group_by("cluster_id", "family", "key")
        .agg(pl.col("account_id").n_unique().alias("n"))
        .filter(pl.col("n") >= 2)
        .sort(["cluster_id", "family", "n", "key"], descending=[False, False, True, False])
        .group_by("cluster_id", "family", maintain_order=True)
        .head(top)
    )
    out: dict[str, dict[str, list[str]]] = {}
    for cid, fam, key, n in k.iter_rows():
        out.setdefault(cid, {}).setdefault(fam, []).append(f"{key} ({n} accounts)")
    return out


def link_summaries(links: pl.DataFrame, now: datetime, top: int = 5) -> dict[str, list[str]]:
    """Per cluster, its strongest links as text: type, accounts, weight, age (hours since last held)."""
    out: dict[str, list[str]] = {}
    for cid, link, accounts, weight, last_seen in (
        links.group_by("cluster_id", maintain_order=True).head(top).iter_rows()
    ):
        age = (now - last_seen).total_seconds() / 3600.0
        out.setdefault(cid, []).append(f"{link}: {accounts} accounts, weight {weight:.2f}, {age:.1f} h old")
    return out


class ClusterContext:
    """What cluster evidence is read from at one cluster tick; shared-key and link summaries are
    computed for the clusters whose verdicts become alerts (``fill``), not for every scored one."""

    def __init__(self, keys: pl.DataFrame, members: pl.DataFrame, links: pl.DataFrame, now: datetime) -> None:
        self.keys, self.members, self.links, self.now = keys, members, links, now
        self.filled: set[str] = set()
        self.shared: dict[str, dict[str, list[str]]] = {}
        self.link_map: dict[str, list[str]] = {}

    def fill(self, cluster_ids: list[str]) -> None:
        """Summaries for those of ``cluster_ids`` not yet summarised (one pass over keys and links)."""
        todo = sorted(set(cluster_ids) - self.filled)
        if not todo:
            return
        wanted = pl.Series(todo, dtype=pl.String).implode()
        self.shared |= shared_keys(self.keys, self.members.filter(pl.col("cluster_id").is_in(wanted)))
        self.link_map |= link_summaries(self.links.filter(pl.col("cluster_id").is_in(wanted)), self.now)
        self.filled.update(todo)


class ClusterEvidence:
    """A cluster verdict's evidence: its features now, its shared keys and links when read."""

    def __init__(self, context: ClusterContext, cluster_id: str, features: dict[str, Any]) -> None:
        self.context, self.cluster_id, self.features = context, cluster_id, features

    def __call__(self) -> dict[str, Any]:
        self.context.fill([self.cluster_id])
        return {
            **self.features,
            "shared": self.context.shared.get(self.cluster_id, {}),
            "links": self.context.link_map.get(self.cluster_id, []),
        }

    @staticmethod
    def fill_all(verdicts: list[Verdict]) -> None:
        """Compute the summaries of every cluster verdict in ``verdicts``, one pass per tick context."""
        by_context: dict[int, tuple[ClusterContext, list[str]]] = {}
        for v in verdicts:
            if isinstance(v.evidence, ClusterEvidence):
                ctx = v.evidence.context
                by_context.setdefault(id(ctx), (ctx, []))[1].append(v.evidence.cluster_id)
        for ctx, ids in by_context.values():
            ctx.fill(ids)


def prepare(verdicts: list[Verdict]) -> None:
    """Batch the lazy parts of the verdicts that become alerts: model explanations, cluster evidence."""
    LazyReasons.explain_all(verdicts)
    ClusterEvidence.fill_all(verdicts)


def accused(named: pl.DataFrame, buckets: pl.DataFrame, now: datetime, window: timedelta) -> pl.DataFrame:
    """Per cluster (``cluster_id``): the accused members (``_accounts``, sorted) and the earliest bucket
    any of them has in the ``window`` before ``now`` (``_first``, the alert's first evidence); a
    cluster with neither raises nothing. ``named``: (cluster_id, account_id) of the members accused."""
    firsts = (
        buckets.join(named.select("account_id"), on="account_id", how="semi")
        .filter((pl.col("bucket") >= now - window) & (pl.col("bucket") < now))
        .group_by("account_id")
        .agg(pl.col("bucket").min())
    )
    return (
        named.join(firsts, on="account_id", how="left")
        .group_by("cluster_id")
        .agg(pl.col("account_id").sort().alias("_accounts"), pl.col("bucket").min().alias("_first"))
        .filter(pl.col("_first").is_not_null())
    )


def account_verdict(row: dict[str, Any], models: ModelSet, rules: RuleSet) -> Verdict:
    """The verdict of one combined account row (``combine`` joined with the account's features)."""
    acct = row["account_id"]
    return Verdict(
        "account",
        acct,
        [acct],
        Severity.of_rank(row["_rank"]),
        row["score"],
        row["campaign_type"],
        LazyReasons(models, row, rules),
        Given({k: row.get(k) for k in ACCOUNT_EVIDENCE}),
        row["first_bucket"],
    )


def cluster_verdict(
    row: dict[str, Any], context: ClusterContext, models: ModelSet, rules: RuleSet
) -> Verdict:
    """The verdict of one combined cluster row with its accused members (``_accounts``) and first
    evidence (``_first``)."""
    features = {k: row.get(k) for k in CLUSTER_EVIDENCE}
    return Verdict(
        "cluster",
        row["cluster_id"],
        row["_accounts"],
        Severity.of_rank(row["_rank"]),
        row["score"],
        row["campaign_type"],
        LazyReasons(models, row, rules),
        ClusterEvidence(context, row["cluster_id"], features),
        row["_first"],
    )
