"""The daemon against a damaged, lost, read-only or full state directory, on the real Tansu broker.

Each damage of issue 14's table is applied to a real checkpoint the daemon wrote. Where a good
checkpoint is left, the daemon falls back to it and the alerts of the two runs together equal those
of an uninterrupted replay, every event counted once; where none is left it refuses to start instead
of reading the input from the beginning. A read-only directory fails readiness, then liveness, and the
stop exits 8; a real write error (polars' ``ComputeError`` under a file-size limit) leaves no folder.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kafka_broker as kb
import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from prometheus_client import CollectorRegistry

from detector.checkpoint import load_engine, pending_events
from detector.lab.demo.feed import create_topics, produce
from detector.lab.simulate import simulate
from detector.runtime.metrics import Metrics
from detector.runtime.replay import replay
from detector.runtime.stream.daemon import Daemon

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[1]
Keys = set[tuple[str, int]]


def _keys(docs: list[dict[str, Any]]) -> Keys:
    return {(d["alert_id"], d["revision"]) for d in docs}


def _settings(bootstrap: str, state: Path, **over: Any) -> Any:
    # a short max poll interval: Tansu waits that long before a group's first assignment
    return kb.stream_settings(bootstrap, state, max_poll_interval_ms=2000, **over)


def _daemon(settings: Any, **kw: Any) -> Daemon:
    return Daemon(settings, kb.engine, Metrics(CollectorRegistry()), keep_alerts=True, **kw)


def _run_until(daemon: Daemon, records: int) -> None:
    """Run until ``records`` were read, then stop (SIGTERM's path: flush, checkpoint, leave)."""
    t = kb.DaemonThread(daemon).start()
    kb.wait_for(lambda: t.error is not None or daemon.summary.records >= records, 90, f"{records} records")
    t.stop()


def _offsets(folder: Path) -> int:
    return sum(json.loads((folder / "meta.json").read_text())["extra"]["offsets"].values())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A broker holding half a day of events, the replay's alerts, and the state two daemon runs left
    after the first half: the second run's claim (the previous checkpoint) and its shutdown checkpoint
    (the current one, mid-tick, with buffered events)."""
    work = tmp_path_factory.mktemp("state-world")
    simulate(work / "sim", days=0.5, seed=1, scale=0.2)
    replay([work / "sim" / "events.jsonl"], kb.engine(), work / "ref.jsonl")
    reference = _keys([orjson.loads(x) for x in (work / "ref.jsonl").read_bytes().splitlines()])
    events = kb.read_events(work / "sim" / "events.jsonl")
    quarter, half = len(events) // 4, len(events) // 2
    with kb.EmbeddedBroker() as broker:
        kb.make_topics(broker.bootstrap)
        state = work / "pristine"
        # one commit at assignment (the claim) and one at the stop: the checkpoints are known
        settings = _settings(broker.bootstrap, state, commit_interval_s=3600)
        first: Keys = set()
        kb.produce_events(broker.bootstrap, events[:quarter])
        daemon = _daemon(settings)
        _run_until(daemon, quarter)
        first |= _keys(daemon.summary.alert_docs)
        kb.produce_events(broker.bootstrap, events[quarter:half])
        daemon = _daemon(settings)
        _run_until(daemon, half - quarter)
        first |= _keys(daemon.summary.alert_docs)
        kb.produce_events(broker.bootstrap, events[half:])
        current, previous = sorted(state.glob("ckpt-*"), reverse=True)
        assert (state / "CURRENT").read_text() == current.name
        assert (current / "pending.parquet").exists(), "stop mid-tick: buffered events in the checkpoint"
        assert _offsets(previous) < _offsets(current)
        yield {
            "broker": broker,
            "n": len(events),
            "events": events,
            "reference": reference,
            "first": first,
            "state": state,
            "current": current.name,
            "previous": previous.name,
        }


def _copy(world: dict[str, Any], tmp_path: Path) -> Path:
    state = tmp_path / "state"
    shutil.copytree(world["state"], state)
    return state


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _dangle(state: Path, current: str) -> None:
    (state / "CURRENT").write_text("ckpt-999999-00000000")


#: issue 14's damage table: what is done to the state, and which checkpoint the daemon must resume from
DAMAGE: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "buckets.parquet missing": (lambda s, c: (s / c / "buckets.parquet").unlink(), "previous"),
    "seen.parquet missing": (lambda s, c: (s / c / "seen.parquet").unlink(), "previous"),
    "an empty alert book": (lambda s, c: (s / c / "book.json").write_text("[]"), "previous"),
    "pending.parquet deleted": (lambda s, c: (s / c / "pending.parquet").unlink(), "previous"),
    "CURRENT dangling": (_dangle, "current"),
    "the checkpoint folder deleted": (lambda s, c: shutil.rmtree(s / c), "previous"),
    "a truncated file": (lambda s, c: _truncate(s / c / "accounts.parquet"), "previous"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_falls_back_and_alerts_equal_an_uninterrupted_run(
    world: dict[str, Any], tmp_path: Path, damage: str
) -> None:
    state = _copy(world, tmp_path)
    apply, resume = DAMAGE[damage]
    apply(state, world["current"])
    start = _offsets(world["state"] / world[resume])
    daemon = _daemon(_settings(world["broker"].bootstrap, state), drain_when_idle=True)
    t = kb.DaemonThread(daemon).start()
    t.thread.join(120)
    assert not t.thread.is_alive()
    if t.error:
        raise t.error
    n = world["n"]
    assert daemon.summary.records == n - start  # resumed at the good checkpoint, not at offset 0
    assert daemon.engine is not None and daemon.engine.stats.events == n  # every event counted once
    assert world["first"] | _keys(daemon.summary.alert_docs) == world["reference"]
    reg = daemon.metrics.registry
    assert reg.get_sample_value("detector_checkpoint_fallbacks_total") == 1


def test_no_good_checkpoint_refuses_to_start(world: dict[str, Any], tmp_path: Path) -> None:
    """Both checkpoints damaged: the daemon refuses before joining the group, naming the directory."""
    from detector.checkpoint import NoGoodCheckpoint

    state = _copy(world, tmp_path)
    (state / world["current"] / "book.json").write_text("[]")
    _truncate(state / world["previous"] / "meta.json")
    daemon = _daemon(_settings(world["broker"].bootstrap, state), drain_when_idle=True)
    t = kb.DaemonThread(daemon).start()
    t.thread.join(60)
    assert not t.thread.is_alive()
    assert isinstance(t.error, NoGoodCheckpoint)
    assert str(state) in str(t.error) and "--reset-state" in str(t.error)
    assert daemon.summary.records == 0


def test_a_takeover_without_good_state_stops_the_daemon(world: dict[str, Any], tmp_path: Path) -> None:
    """The same checks at a partition assignment (a standby taking over after the state vanished or
    was damaged): the listener records the refusal as fatal, since kafka-python would swallow an error
    raised there and leave the partitions assigned and idle."""
    from detector.checkpoint import NoGoodCheckpoint

    damaged = _copy(world, tmp_path)
    for folder in damaged.glob("ckpt-*"):
        (folder / "book.json").write_text("[]")
    partitions = list(range(kb.PARTITIONS))
    for state in (tmp_path / "vanished", damaged):
        daemon = _daemon(_settings(world["broker"].bootstrap, state))
        daemon.consumer._listener.on_assigned(partitions)
        assert isinstance(daemon.fatal, NoGoodCheckpoint) and str(state) in str(daemon.fatal)
        assert daemon.engine is None and not daemon.ready()


def _env(settings: Any) -> dict[str, str]:
    return {**os.environ, **kb.settings_env(settings), "DETECTOR_RULES_DIR": str(REPO / "rules")}


def _run_cli(settings: Any, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "detector", "run", *args],
        cwd=REPO,
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=timeout,
        check=False,
    )


def test_lost_state_refuses_unless_reset(world: dict[str, Any], tmp_path: Path) -> None:
    """The state directory deleted while the group has offsets: `detector run` exits 7 with one line
    naming the directory; `--reset-state` reads the input from the beginning and counts it once."""
    state = tmp_path / "gone"
    settings = _settings(world["broker"].bootstrap, state)
    refused = _run_cli(settings, "--drain", timeout=60)
    assert refused.returncode == 7, refused.stderr.decode()[-2000:]
    last = refused.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("detector: error: ") and str(state) in last and "--reset-state" in last
    assert not state.exists()  # nothing written

    reset = _run_cli(settings, "--drain", "--reset-state")
    assert reset.returncode == 0, reset.stderr.decode()[-2000:]
    assert b"state reset" in reset.stderr
    engine = kb.engine()
    extra = load_engine(engine, state)
    assert extra is not None and sum(extra["offsets"].values()) == world["n"]
    assert engine.stats.events == world["n"] and pending_events(engine) is None


# --------------------------------------------------------------------------- unwritable state directory
def _topic(bootstrap: str, name: str, events: list[tuple[bytes, bytes, int]]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        create_topics(admin, {name: 2})
    finally:
        admin.close()
    if events:
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        try:
            produce(producer, name, events)
        finally:
            producer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _start(settings: Any, *args: str, wrap: list[str] | None = None, **popen: Any) -> subprocess.Popen[bytes]:
    cmd = [*(wrap or []), sys.executable, "-m", "detector", "run", *args]
    return subprocess.Popen(
        cmd, cwd=REPO, env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen
    )


def _no_file_permission_override() -> list[str]:
    """Root writes into a read-only directory anyway: drop the capabilities that let it (CI runs the
    tests as an ordinary user, for whom the mode alone is enough)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def test_read_only_state_dir_fails_readiness_then_liveness_and_exit(
    world: dict[str, Any], tmp_path: Path
) -> None:
    bootstrap = world["broker"].bootstrap
    _topic(bootstrap, "ro-in", [])
    state, port = tmp_path / "ro-state", _free_port()
    settings = _settings(
        bootstrap,
        state,
        input_topic="ro-in",
        group_id="ro-group",
        metrics_port=port,
        commit_interval_s=0.3,
        checkpoint_stale_intervals=5,
    )
    proc = _start(settings, wrap=_no_file_permission_override())
    try:
        kb.wait_for(lambda: _status(port, "/readyz") == 200 and (state / "CURRENT").exists(), 60, "ready")
        claim = (state / "CURRENT").read_text()
        state.chmod(0o555)
        _topic(bootstrap, "ro-in", world["events"][:2000])
        kb.wait_for(
            lambda: (kb.metric(port, "detector_checkpoint_failures_total") or 0) >= 1, 60, "a failure"
        )
        assert _status(port, "/readyz") == 503
        kb.wait_for(lambda: _status(port, "/healthz") == 503, 30, "liveness to fail")
        assert (kb.metric(port, "detector_events_consumed_total") or 0) > 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        state.chmod(0o755)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 8, err.decode()[-2000:]
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("detector: error: ") and str(state) in last and "last checkpoint failed" in last
    assert sorted(p.name for p in state.iterdir()) == sorted(["CURRENT", claim])


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_real_write_error_leaves_no_partial_folder(world: dict[str, Any], tmp_path: Path) -> None:
    """A file-size limit (what a full volume looks like to polars): the claim checkpoint fits, the
    later ones do not. polars raises ``ComputeError``; no partial folder is left, the last good
    checkpoint stays current, and the drained daemon exits 8 instead of 0."""
    bootstrap = world["broker"].bootstrap
    _topic(bootstrap, "full-in", world["events"])
    state = tmp_path / "full-state"
    settings = _settings(
        bootstrap, state, input_topic="full-in", group_id="full-group", commit_interval_s=0.3
    )
    proc = _start(settings, "--drain", preexec_fn=_file_size_limit(64 << 10))
    _, err = proc.communicate(timeout=180)
    text = err.decode()
    assert proc.returncode == 8, text[-2000:]
    assert "ComputeError" in text and "checkpoint failed" in text
    from detector.statedir import verify

    # only whole checkpoints (the claim, and any early one that still fit under the limit): no
    # temporary or partial folder, each verifies, and the current one is behind what was counted
    names = sorted(p.name for p in state.iterdir())
    assert names[0] == "CURRENT" and all(n.startswith("ckpt-") for n in names[1:]), names
    assert all(verify(state / n) is None for n in names[1:])
    assert (state / "CURRENT").read_text() in names
    engine = kb.engine()
    assert load_engine(engine, state) is not None and engine.stats.events < world["n"]
