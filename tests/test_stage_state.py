"""Issue 13: an account stage's state per assignment (``<state>/account/p<partitions>``), checked and
reset folder by folder (``statecheck.check_assignment``, ``check_account_state``;
docs/runtime.md, "Stages"). No broker: the daemon is built but never run past its start checks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from detector.app import build_daemon, build_engine, engine_settings
from detector.checkpoint import TEXT_KEY_CHECK, NoGoodCheckpoint
from detector.errors import ConfigError
from detector.runtime.metrics import Metrics
from detector.runtime.stream import statecheck
from detector.runtime.stream.daemon import Daemon
from detector.runtime.stream.settings import StreamSettings
from detector.statedir import choose, write_folder


def _fill(meta: dict[str, object]) -> Callable[[Path], None]:
    def fill(folder: Path) -> None:
        (folder / "book.json").write_text("[]")
        (folder / "meta.json").write_text(json.dumps({"format": 1, "extra": {}, **meta}))

    return fill


def _settings(state: Path) -> StreamSettings:
    # never contacted: the daemon is built, its start checks run, nothing joins a group
    return StreamSettings(bootstrap_servers="127.0.0.1:9", state_dir=state, stage="account")


def _daemon(state: Path, reset: bool, outputs: Callable[[], object] | None = None) -> Daemon:
    factory = partial(build_engine, settings=engine_settings(models=False))
    return Daemon(_settings(state), factory, Metrics(CollectorRegistry()), reset_state=reset, outputs=outputs)  # type: ignore[arg-type]


def _damaged(root: Path) -> Path:
    folder = write_folder(root, _fill({}))
    (folder / "book.json").write_text('["changed"]')  # no longer what its manifest says
    return folder


def test_reset_state_moves_a_damaged_assignment_folder_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: ``--reset-state`` never reached ``<state>/account/p0-2``, and its load stopped the
    daemon at every restart. Now the folder is reset as it is taken, with the single daemon's line."""
    part = tmp_path / "account" / "p0-2"
    _damaged(part)
    d = _daemon(tmp_path, reset=True)
    with caplog.at_level(logging.WARNING, logger="detector.stream"):
        d.use_assignment([2, 0])
    assert d.folder.root == part
    assert d.folder.check() is False  # empty now: the set reads its partitions from the beginning
    assert len(list(part.glob("discarded-*/CURRENT"))) == 1
    lines = [r for r in caplog.records if r.getMessage().startswith("state reset")]
    assert len(lines) == 1 and lines[0].__dict__["state_dir"] == str(part)


def test_reset_state_leaves_a_good_assignment_folder_alone(tmp_path: Path) -> None:
    part = tmp_path / "account" / "p1"
    good = write_folder(part, _fill({}))
    d = _daemon(tmp_path, reset=True)
    d.use_assignment([1])
    assert choose(part).folder == good and not list(part.glob("discarded-*"))


def test_without_reset_a_damaged_assignment_folder_is_refused_naming_it(tmp_path: Path) -> None:
    part = tmp_path / "account" / "p0-2"
    _damaged(part)
    d = _daemon(tmp_path, reset=False)
    with pytest.raises(NoGoodCheckpoint) as err:
        d.use_assignment([0, 2])
    assert err.value.location == str(part)
    assert d.folder.root == tmp_path / "account"  # not taken


class _PastTheCheck(Exception):
    pass


def _past() -> object:
    raise _PastTheCheck


def test_an_account_stage_with_no_state_anywhere_but_committed_offsets_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the start's lost-state check looked at ``<state>/account`` only and was skipped for the
    account stage; a wiped volume read every partition from the beginning again."""
    monkeypatch.setattr(statecheck, "committed_offsets", lambda s: {0: 120, 1: 80})
    with pytest.raises(NoGoodCheckpoint, match="committed offsets") as err:
        _daemon(tmp_path, reset=False, outputs=_past).run()
    assert err.value.location == str(tmp_path / "account")
    with pytest.raises(_PastTheCheck):  # --reset-state: the folders are checked as they are taken
        _daemon(tmp_path, reset=True, outputs=_past).run()
    write_folder(tmp_path / "account" / "p1", _fill({}))  # one set held before: new sets start empty
    with pytest.raises(_PastTheCheck):
        _daemon(tmp_path, reset=False, outputs=_past).run()


def test_a_first_account_stage_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statecheck, "committed_offsets", lambda s: {})
    with pytest.raises(_PastTheCheck):
        _daemon(tmp_path, reset=False, outputs=_past).run()


def test_the_text_key_check_at_start_reads_every_assignment_folder(tmp_path: Path) -> None:
    """Before: it read ``<state>/account``, which holds no checkpoint of its own."""
    part = tmp_path / "account" / "p3"
    write_folder(tmp_path / "account" / "p1", _fill({}))
    write_folder(part, _fill({TEXT_KEY_CHECK: "written-under-another-key"}))
    es = engine_settings(models=False).model_copy(update={"context_lag": True})
    with pytest.raises(ConfigError, match="under a text key, and none is set") as err:
        build_daemon(_settings(tmp_path), engine=es, watch_rules=False)
    assert str(part) in str(err.value)
