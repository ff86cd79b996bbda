"""Training rows from analysts' dispositions: the features of dispositioned alerts' subjects.

The traffic behind the alerts is replayed (rules only) with an ``on_features`` observer capturing every
tick's account and cluster features; the rows of each dispositioned alert's subject (the account, or
the cluster id) from the episode's first event to its last revision are labelled by the latest
disposition: ``confirm`` is an attack, ``false_positive`` and ``benign_explained`` are not. Their group
is ``disposition:<verdict>``. ``detector train --dispositions`` adds them to the training rows only; the
calibration draws stay simulator-labelled, so the before/after metrics say what the labels changed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import orjson
import polars as pl

from detector.decide.dispositions import DispositionStore
from detector.schema import UTC_US, parse_ts


def _episodes(alerts: Path, store: Path) -> pl.DataFrame:
    """(kind, subject, start, end, label, group) per dispositioned alert."""
    db = DispositionStore(store)
    latest = db.latest()
    db.close()
    spans: dict[str, dict[str, object]] = {}
    for line in alerts.read_bytes().splitlines():
        if not line.strip():
            continue
        a = orjson.loads(line)
        d = latest.get(a["alert_id"])
        if d is None:
            continue
        end = (a.get("evidence") or {}).get("revision_event_ts") or a["detected_event_ts"]
        row = spans.setdefault(
            a["alert_id"],
            {
                "kind": a["kind"],
                "subject": a["subject"],
                "start": a["first_event_ts"],
                "end": end,
                "label": d.verdict == "confirm",
                "group": f"disposition:{d.verdict}",
            },
        )
        row["end"] = max(str(row["end"]), str(end))
    frame = pl.DataFrame(
        list(spans.values()),
        schema={
            "kind": pl.String,
            "subject": pl.String,
            "start": pl.String,
            "end": pl.String,
            "label": pl.Boolean,
            "group": pl.String,
        },
    )
    return frame.with_columns(parse_ts(pl.col("start")), parse_ts(pl.col("end")))


def disposition_rows(events: list[Path], alerts: Path, store: Path) -> dict[str, pl.DataFrame]:
    """target -> labelled feature rows (``label``, ``group``) of the dispositioned alerts' subjects."""
    from detector.app import build_engine
    from detector.engine import Observers
    from detector.runtime.replay import replay

    episodes = _episodes(alerts, store)
    frames: dict[str, list[pl.DataFrame]] = {"account": [], "cluster": []}

    def on_features(target: str, frame: pl.DataFrame, now: datetime) -> None:
        frames[target].append(frame)

    engine = build_engine(models=False, observers=Observers(on_features=on_features))
    replay(events, engine, alerts_out=None)
    out: dict[str, pl.DataFrame] = {}
    for target, key in (("account", "account_id"), ("cluster", "cluster_id")):
        eps = episodes.filter(pl.col("kind") == target).drop("kind").rename({"subject": key})
        if not frames[target] or eps.height == 0:
            continue
        feats = pl.concat(frames[target], how="vertical_relaxed")
        rows = (
            feats.join(eps, on=key, how="inner")
            .filter(
                (pl.col("tick_end").cast(UTC_US) > pl.col("start"))
                & (pl.col("tick_end").cast(UTC_US) <= pl.col("end"))
            )
            .drop("start", "end")
            .unique(subset=[key, "tick_end"], keep="first", maintain_order=True)
        )
        if rows.height:
            out[target] = rows
    return out
