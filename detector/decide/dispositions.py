"""Analyst dispositions: an append-only SQLite store of verdicts on alerts, and what a false positive
proposes (allow-list entries, shown as a diff of the allow-list YAML).

A disposition is ``confirm`` (an attack), ``false_positive`` (not one: the episode's decisions are
withdrawn and an allow-list entry is proposed) or ``benign_explained`` (the behaviour is real but
legitimate, e.g. an eval harness). The store only ever inserts: a changed mind is a new row, and the
latest row per alert wins. Notes are analysts' words; prompt text never reaches them from here.
"""

from __future__ import annotations

import difflib
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

Verdict = Literal["confirm", "false_positive", "benign_explained"]
#: How long a proposed allow-list entry lasts before someone must renew it (a reviewable default).
PROPOSED_ENTRY_DAYS = 90
_SHARED = re.compile(r"^(?P<key>.+) \((?P<n>\d+) accounts\)$")


class Disposition(BaseModel):
    """One analyst verdict on one alert."""

    model_config = ConfigDict(extra="forbid")

    alert_id: Annotated[str, Field(pattern=r"^al-[0-9a-f]+$")]
    verdict: Verdict
    note: Annotated[str, Field(max_length=2000)] = ""
    analyst: Annotated[str, Field(max_length=128)] = ""
    #: Wall time the analyst decided (an audit fact, not an event time).
    at: AwareDatetime


class DispositionStore:
    """Append-only SQLite table of dispositions (path configurable; the folder is created)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS dispositions (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "alert_id TEXT NOT NULL, verdict TEXT NOT NULL, note TEXT NOT NULL, analyst TEXT NOT NULL, "
            "at TEXT NOT NULL)"
        )
        # append-only: the database itself refuses updates and deletes
        for op in ("UPDATE", "DELETE"):
            self._db.execute(
                f"CREATE TRIGGER IF NOT EXISTS dispositions_no_{op.lower()} BEFORE {op} ON dispositions "
                "BEGIN SELECT RAISE(ABORT, 'dispositions are append-only'); END"
            )
        self._db.commit()

    def add(self, d: Disposition) -> int:
        """Append one disposition; returns its sequence number."""
        cur = self._db.execute(
            "INSERT INTO dispositions (alert_id, verdict, note, analyst, at) VALUES (?, ?, ?, ?, ?)",
            (d.alert_id, d.verdict, d.note, d.analyst, d.at.isoformat()),
        )
        self._db.commit()
        return int(cur.lastrowid or 0)

    def all(self) -> list[Disposition]:
        """Every row, oldest first."""
        rows = self._db.execute("SELECT alert_id, verdict, note, analyst, at FROM dispositions ORDER BY seq")
        return [
            Disposition(alert_id=a, verdict=v, note=n, analyst=w, at=datetime.fromisoformat(t))
            for a, v, n, w, t in rows
        ]

    def latest(self) -> dict[str, Disposition]:
        """alert id -> its latest disposition."""
        return {d.alert_id: d for d in self.all()}

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def proposed_entries(alert: dict[str, Any], d: Disposition) -> list[dict[str, Any]]:
    """Allow-list entries a false positive on ``alert`` (a JSON alert record) proposes.

    Every named account; for a cluster, also the payment and reseller values most of its accounts share
    (a company card, a legitimate reseller), so the same customers are not accused again tomorrow.
    """
    expires = (d.at + timedelta(days=PROPOSED_ENTRY_DAYS)).isoformat().replace("+00:00", "Z")
    reason = f"false positive {d.alert_id}" + (f": {d.note}" if d.note else "")
    entries = [
        {"type": "account", "value": a, "reason": reason, "expires": expires, "added_by": d.analyst or None}
        for a in alert.get("account_ids", [])
    ]
    shared = (alert.get("evidence") or {}).get("shared") or {}
    accounts = len(alert.get("account_ids", [])) or 1
    for family, typ in (("payment", "payment"), ("reseller", "reseller")):
        for text in shared.get(family, []):
            m = _SHARED.match(str(text))
            if m and int(m.group("n")) * 2 >= accounts:
                entries.append(
                    {"type": typ, "value": m.group("key"), "reason": reason, "expires": expires}
                    | ({"added_by": d.analyst} if d.analyst else {})
                )
    for e in entries:
        if e.get("added_by") is None:
            e.pop("added_by", None)
    return entries


def allowlist_diff(current: Path | None, entries: list[dict[str, Any]]) -> tuple[str, str]:
    """(unified diff, new file text) of adding ``entries`` to the allow-list at ``current``."""
    old = current.read_text(encoding="utf-8") if current is not None and current.exists() else ""
    have = {(e.get("type"), e.get("value")) for e in (yaml.safe_load(old) or [])} if old else set()
    fresh = [e for e in entries if (e["type"], e["value"]) not in have]
    addition = yaml.safe_dump(fresh, sort_keys=False, allow_unicode=True) if fresh else ""
    new = old + ("" if not old or old.endswith("\n") else "\n") + addition
    name = str(current) if current is not None else "allowlist.yaml"
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), name, f"{name} (proposed)"
        )
    )
    return diff, new


def read_token(env_value: str | None, file: Path | None) -> str | None:
    """The ops-port token: from an env value or a file (first line); None when neither is set."""
    if env_value:
        return env_value.strip() or None
    if file is not None:
        return file.read_text(encoding="utf-8").strip() or None
    return None


def http_handler(
    store: DispositionStore, on_false_positive: Callable[[str], int] | None = None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A ``POST /dispositions`` handler: validate, append, and for a false positive call
    ``on_false_positive(alert_id)`` (the daemon withdraws the episode's decisions there)."""

    def handle(body: dict[str, Any]) -> dict[str, Any]:
        try:
            d = Disposition.model_validate({**body, "at": datetime.now(UTC)})
        except ValidationError as exc:
            raise ValueError(
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            ) from None
        seq = store.add(d)
        withdrawn = (
            on_false_positive(d.alert_id) if on_false_positive and d.verdict == "false_positive" else 0
        )
        return {"seq": seq, "alert_id": d.alert_id, "verdict": d.verdict, "withdrawn": withdrawn}

    return handle
