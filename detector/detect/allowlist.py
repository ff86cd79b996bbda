"""Typed allow-lists with reason and expiry: known-honest accounts, orgs, cards, resellers, prefixes.

The file is YAML: a list of entries ``{type, value, reason, expires, added_by}``; ``type`` is one of
account | org | payment | reseller | prefix. Expired entries are ignored (by event time, so a replay
applies the list as it stood), and every suppression is counted by type.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator

from detector.contracts import LinkFamily
from detector.detect.rules.source import RuleYamlLoader
from detector.errors import ConfigError

EntryType = Literal["account", "org", "payment", "reseller", "prefix"]
#: allow-list type -> (state table column or linkage family holding the value)
_FAMILY: dict[EntryType, LinkFamily] = {"payment": "payment", "reseller": "reseller", "prefix": "ip"}


class AllowEntry(BaseModel):
    """One allow-list entry."""

    model_config = ConfigDict(extra="forbid")

    type: EntryType
    value: str
    reason: str
    expires: AwareDatetime | None = None
    added_by: str | None = None

    @field_validator("expires", mode="before")
    @classmethod
    def _date_is_end_of_day(cls, value: object) -> object:
        """A date (``2026-12-31``, YAML date or text) means the end of that day, UTC."""
        if isinstance(value, str) and len(value.strip()) == 10:
            try:
                value = date.fromisoformat(value.strip())
            except ValueError:
                return value
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC)
        return value


class AllowList(BaseModel):
    """All entries; ``matches`` finds the allow-listed accounts among candidates."""

    entries: list[AllowEntry] = []
    suppressed: Counter[str] = Counter()

    @classmethod
    def load(cls, path: Path | None) -> AllowList:
        """Read the YAML file (None means an empty list); ``ConfigError`` lists every bad entry."""
        if path is None:
            return cls()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("allow-list file not found; give an existing YAML file", str(path)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the allow-list: {exc}", str(path)) from None
        # the rule files' SafeLoader: no tags, aliases, duplicate keys or deep nesting
        loader = RuleYamlLoader(text)
        try:
            raw = loader.get_single_data() or []
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid allow-list YAML: {' '.join(str(exc).split())}", str(path)) from None
        finally:
            loader.dispose()
        if not isinstance(raw, list):
            raise ConfigError("expected a YAML list of allow-list entries", str(path))
        entries, problems = [], []
        for i, e in enumerate(raw):
            try:
                entries.append(AllowEntry.model_validate(e))
            except ValidationError as exc:
                what = "; ".join(
                    f"{'.'.join(map(str, d['loc'])) or 'entry'}: {d['msg']}" for d in exc.errors()
                )
                problems.append(f"allow-list entry {i + 1}: {what}")
        if problems:
            n = len(problems)
            raise ConfigError(f"{n} bad entr{'y' if n == 1 else 'ies'}: " + " | ".join(problems), str(path))
        return cls(entries=entries)

    def live(self, now: datetime) -> list[AllowEntry]:
        """Entries not yet expired at event time ``now``."""
        return [e for e in self.entries if e.expires is None or e.expires > now]

    def allowed(
        self, accounts: pl.Series, keys: pl.DataFrame, orgs: pl.DataFrame, now: datetime
    ) -> dict[str, str]:
        """account -> entry type that allows it, for the given candidate accounts."""
        out: dict[str, str] = {}
        live = self.live(now)
        if not live:
            return out
        cand = set(accounts.to_list())
        for e in live:
            if e.type == "account":
                hit = {e.value} & cand
            elif e.type == "org":
                hit = set(orgs.filter(pl.col("org_id") == e.value)["account_id"].to_list()) & cand
            else:
                fam = _FAMILY[e.type]
                hit = (
                    set(
                        keys.filter((pl.col("family") == fam) & (pl.col("key") == e.value))[
                            "account_id"
                        ].to_list()
                    )
                    & cand
                )
            for a in hit:
                out.setdefault(a, e.type)
        return out


def suppress(rows: pl.DataFrame, allowed: dict[str, str], counts: Counter[str]) -> pl.DataFrame:
    """``rows`` minus those whose ``account_id`` is allow-listed (account -> entry type), counted per
    entry type into ``counts``."""
    if not allowed:
        return rows
    kinds = rows["account_id"].replace_strict(allowed, default=None, return_dtype=pl.String)
    for kind, n in Counter(k for k in kinds.to_list() if k is not None).items():
        counts[kind] += n
    return rows.filter(kinds.is_null())


def drop_allowed(
    allowlist: AllowList, rows: pl.DataFrame, keys: pl.DataFrame, orgs: pl.DataFrame, counts: Counter[str]
) -> pl.DataFrame:
    """Account verdict rows (``account_id``, ``tick_end``) minus allow-listed accounts, as the list stood
    at each tick, counted into ``counts``. ``keys``: (account_id, tick_end, family, key), each account's
    linkage keys as they stood at each tick (``window.asof``); ``orgs``: (account_id, org_id)."""
    if not allowlist.entries:
        return rows
    keep: list[pl.DataFrame] = []
    for (now,), part in rows.group_by(["tick_end"], maintain_order=True):
        assert isinstance(now, datetime)
        held = keys.filter(pl.col("tick_end") == now)
        keep.append(suppress(part, allowlist.allowed(part["account_id"], held, orgs, now), counts))
    return pl.concat(keep, how="vertical_relaxed") if keep else rows.clear()
