"""``detector train --dispositions``: analyst-labelled episodes join the training rows and the held-out
metrics are reported without and with them (so one bad label cannot silently flip a model)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from detector.app import build_engine
from detector.decide.dispositions import Disposition, DispositionStore
from detector.lab.simulate import simulate
from detector.lab.train.dispositions import disposition_rows
from detector.lab.train.draws import DrawSize
from detector.lab.train.train import TrainConfig, train_all
from detector.runtime.replay import replay

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_disposition_rows_join_training_with_before_and_after_metrics(tmp_path: Path) -> None:
    run = tmp_path / "analysed"
    simulate(run, days=1, seed=3, scale=0.15)
    replay([run / "events.parquet"], build_engine(ROOT / "rules", models=False), run / "alerts.jsonl")
    labels = json.loads((run / "labels.json").read_text())["accounts"]
    store = DispositionStore(tmp_path / "d.sqlite")
    verdicts: dict[str, str] = {}
    for line in (run / "alerts.jsonl").read_text().splitlines():
        a = json.loads(line)
        bad = sum(labels[x]["attacker"] for x in a["account_ids"]) * 2 > len(a["account_ids"])
        verdicts[a["alert_id"]] = "confirm" if bad else "benign_explained"
    for aid, v in verdicts.items():
        store.add(Disposition(alert_id=aid, verdict=v, at=datetime.now(UTC)))  # type: ignore[arg-type]
    store.close()
    extra = disposition_rows([run / "events.parquet"], run / "alerts.jsonl", tmp_path / "d.sqlite")
    assert extra["account"].height > 0 and extra["account"]["label"].any()
    assert set(extra["account"]["group"].unique()) <= {"disposition:confirm", "disposition:benign_explained"}

    cfg = TrainConfig(
        out=tmp_path / "models",
        work=tmp_path / "work",
        train_draws=(0, 1),
        calibration_draws=(500,),
        size=DrawSize(days=0.5, scale=0.1, attack_accounts=6),
        targets=("account",),
        extra=extra,
    )
    (manifest,) = train_all(cfg)
    before = manifest.heldout["before_dispositions"]
    assert manifest.heldout["disposition_rows"]["rows"] == extra["account"].height
    assert before["auc"] is not None and manifest.heldout["auc"] is not None
    assert {g["group"] for g in before["groups"]} == {g["group"] for g in manifest.heldout["groups"]}
    card = json.loads((tmp_path / "models" / f"{manifest.stem}.json").read_text())
    assert card["heldout"]["before_dispositions"]["auc"] == before["auc"]
