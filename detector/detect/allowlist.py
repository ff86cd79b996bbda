"""Typed allow-lists with reason and expiry: known-honest accounts, orgs, cards, resellers, prefixes.

The file is YAML: a list of entries ``{type, value, reason, expires, added_by}``; ``type`` is one of
account | org | payment | reseller | prefix. Expired entries are ignored (by event time, so a replay
applies the list as it stood), and every suppression is counted by type.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from detector.detect.rules.source import RuleYamlLoader

EntryType = Literal["account", "org", "payment", "reseller", "prefix"]
#: allow-list type -> (state table column or linkage family holding the value)
_FAMILY = {"payment": "payment", "reseller": "reseller", "prefix": "ip"}


class AllowEntry(BaseModel):
    """One allow-list entry."""

    model_config = ConfigDict(extra="forbid")

    type: EntryType
    value: str
    reason: str
    expires: AwareDatetime | None = None
    added_by: str | None = None


class AllowList(BaseModel):
    """All entries; ``matches`` finds the allow-listed accounts among candidates."""

    entries: list[AllowEntry] = []
    suppressed: Counter[str] = Counter()

    @classmethod
    def load(cls, path: Path | None) -> AllowList:
        """Read the YAML file (a missing path means an empty list)."""
        if path is None:
            return cls()
        loader = RuleYamlLoader(path.read_text(encoding="utf-8"))  # rule files' SafeLoader: no tags,
        try:  # aliases, duplicate keys or deep nesting
            raw = loader.get_single_data() or []
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid allow-list YAML: {exc}") from None
        finally:
            loader.dispose()
        if not isinstance(raw, list):
            raise ValueError(f"{path}: expected a list of allow-list entries")
        entries = []
        for i, e in enumerate(raw):
            try:
                entries.append(AllowEntry.model_validate(e))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, d['loc'])) or 'entry'}: {d['msg']}" for d in exc.errors()
                )
                raise ValueError(f"{path}: allow-list entry {i + 1}: {problems}") from None
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
