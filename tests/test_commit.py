"""The commit protocol without a broker: flush before writing, fencing, offsets only forward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from detector.app import build_engine
from detector.checkpoint import CheckpointFolder, StreamPosition, current_extra
from detector.contracts import Alert
from detector.io.sinks import ListSink, Outputs, SinkError, SinkGroup
from detector.runtime.metrics import Metrics
from detector.runtime.stream.commit import Checkpoint, CommitError, Fenced

REPO = Path(__file__).resolve().parents[1]


class _Refusing(ListSink[Alert]):
    """A sink whose deliveries are not acknowledged."""

    def flush(self) -> None:
        raise SinkError("1 sends failed, first: alert: NotEnoughReplicasError")


@pytest.fixture(scope="module")
def engine() -> Any:
    return build_engine(rules_dir=REPO / "rules", models=False)


def _checkpoint(root: Path) -> tuple[Checkpoint, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return Checkpoint(CheckpointFolder(root), "in", metrics), metrics


def test_steps_in_order_and_offsets_only_forward(engine: Any, tmp_path: Path) -> None:
    ckpt, metrics = _checkpoint(tmp_path)
    sent: list[dict[int, int]] = []
    folder = ckpt.commit(engine, Outputs(), {0: 10, 1: 4}, 1, 7, sent.append)
    assert folder is not None and (tmp_path / "CURRENT").read_text() == folder.name
    assert StreamPosition.from_extra(current_extra(tmp_path), "in").offsets == {0: 10, 1: 4}
    assert StreamPosition.from_extra(current_extra(tmp_path), "other").offsets == {}
    ckpt.commit(engine, Outputs(), {0: 9, 1: 5}, 1, 7, sent.append)
    assert sent == [{0: 10, 1: 4}, {1: 5}]  # partition 0 would have gone back: not sent
    ckpt.reset()  # a new assignment: everything is sent again
    ckpt.commit(engine, Outputs(), {0: 9, 1: 5}, 1, 7, sent.append)
    assert sent[-1] == {0: 9, 1: 5}
    assert metrics.registry.get_sample_value("detector_checkpoint_seconds_count") == 3


def test_a_failed_flush_writes_nothing(engine: Any, tmp_path: Path) -> None:
    ckpt, metrics = _checkpoint(tmp_path)
    sent: list[dict[int, int]] = []
    with pytest.raises(SinkError):
        ckpt.commit(engine, Outputs(alerts=SinkGroup([_Refusing()])), {0: 3}, 1, 0, sent.append)
    assert not (tmp_path / "CURRENT").exists() and sent == []
    assert metrics.registry.get_sample_value("detector_checkpoint_failures_total") == 1


def test_a_newer_owner_fences_the_commit(engine: Any, tmp_path: Path) -> None:
    ckpt, _ = _checkpoint(tmp_path)
    newer = CheckpointFolder(tmp_path).save(engine, StreamPosition("in", {0: 1}, owner_epoch=5).to_extra())
    sent: list[dict[int, int]] = []
    with pytest.raises(Fenced) as info:
        ckpt.commit(engine, Outputs(), {0: 3}, 4, 0, sent.append)
    assert isinstance(info.value, CommitError)
    assert CheckpointFolder(tmp_path).current_name() == newer.name and sent == []
