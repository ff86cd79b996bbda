"""Issue 13's correctness gate on the two-stage split, on the real broker: faults mid-stream.

One cluster stage and two account stages, each a ``detector run --drain`` process, over the half day of
``test_stages.py`` (``stage_runs.DAY``), whose uninterrupted run sends exactly the alerts of ``detector
replay`` with ``DETECTOR_CONTEXT_LAG`` on (that test). Here:

- five ``kill -9`` of stage processes chosen at random (the cluster stage included), each started again;
- a third account stage joining the group mid-stream and later leaving it cleanly (SIGTERM), so the
  partitions move between the members twice;
- a share dealt to a member that never reads it (as a member killed after it joined looks until its
  session expires): ``--drain`` must not end the others before that share is read (``stream/drain.py``);

and the alerts sent, together, must still be replay's: the same (alert_id, revision) set, every copy
field for field (``emitted_at`` aside; the counts are in the evidence), a resend allowed only as an
identical copy (``stage_runs.compare``).

The kill schedule is drawn from a ``random.Random`` whose seed is printed and differs per run (from the
clock), so each CI run tries another schedule; ``DETECTOR_KILL_SEED=<seed>`` draws a failing run's again
(the draws, not the machine's timing: the schedule that ran is in every failure message).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kafka_broker as kb
import pytest
from stage_runs import CONTEXTS, Stages, assigned, compare, ghost, reference

KILLS = 5
FIRST = {"account-a": "account", "account-b": "account", "cluster": "cluster"}


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The half day's events file and the lagged replay's alerts (computed once for the module)."""
    folder = tmp_path_factory.mktemp("day")
    return folder / "sim" / "events.jsonl", reference(folder)


@contextmanager
def _run(events_file: Path, folder: Path) -> Iterator[tuple[kb.EmbeddedBroker, Stages]]:
    """A broker with the day's events, and the three stages of ``FIRST`` started on it; on the way out
    every stage still running is killed and the broker stopped."""
    with kb.EmbeddedBroker() as broker:
        kb.make_topics(broker.bootstrap, extra={CONTEXTS: 1})
        kb.produce_events(broker.bootstrap, kb.read_events(events_file))
        state = folder / "state"
        # a wait bound past any pause here: the join test keeps the cluster stage down through two deals
        settings = kb.stream_settings(
            broker.bootstrap, state, max_poll_records=200, commit_interval_s=0.5, context_wait_s=300.0
        )
        stages = Stages(settings, folder)
        try:
            for name, stage in FIRST.items():
                stages.start(name, stage)
            yield broker, stages
        finally:
            for proc in stages.procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)


@pytest.mark.kafka
def test_five_kill9_of_random_stages_lose_and_double_count_nothing(
    day: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    events_file, ref = day
    seed = int(os.environ.get("DETECTOR_KILL_SEED") or time.time_ns() % 1_000_000)
    print(f"kill schedule seed {seed} (DETECTOR_KILL_SEED={seed} draws it again)")
    rng = random.Random(seed)
    schedule: list[str] = []
    with _run(events_file, tmp_path) as (broker, stages):
        t0 = time.monotonic()
        for i in range(1, KILLS + 1):
            time.sleep(rng.uniform(1.0, 6.0))
            alive = stages.running()
            why = f"seed {seed}, kills so far {schedule}: "
            assert alive, f"{why}every stage finished before kill {i}; make the day longer"
            name = rng.choice(alive)
            pid = stages.procs[name].pid
            stages.send(name, signal.SIGKILL)
            schedule.append(f"{i}: {name} pid {pid} at {time.monotonic() - t0:.1f}s")
            print(f"kill {schedule[-1]}")
            stages.start(name)
        why = f"seed {seed}, kills {schedule}: "
        stages.finish(why)
        # the union of what every process sent: lost nothing, and a resend is an identical copy
        compare([r.value for r in kb.read_topic(broker.bootstrap, kb.ALERTS)], ref, why)


@pytest.mark.kafka
def test_an_account_stage_joining_and_leaving_mid_stream_loses_and_double_counts_nothing(
    day: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    events_file, ref = day
    with _run(events_file, tmp_path) as (broker, stages):
        first = ("account-a", "account-b")
        kb.wait_for(lambda: all(assigned(stages.log(n)) for n in first), 180, "the first two's partitions")
        time.sleep(1.0)
        assert stages.running() == sorted(FIRST), "a stage finished before the join; make the day longer"
        # the cluster stage is down (kill -9) until both deals are done: the account stages wait for its
        # contexts while the partitions move (a drained member now also waits for the group's partitions:
        # ``test_a_share_dealt_to_a_member_that_never_reads_it...``)
        stages.send("cluster", signal.SIGKILL)
        stages.start("account-c", "account")  # joins: the group deals the 4 partitions to 3 members
        dealt = {n: len(assigned(stages.log(n))) for n in (*first, "account-c")}
        kb.wait_for(
            lambda: all(len(assigned(stages.log(n))) > dealt[n] for n in (*first, "account-c")),
            180,
            "every account stage dealt a share again after the join",
            lambda: f"running: {stages.running()}",
        )
        assert all(stages.procs[n].poll() is None for n in first), f"not mid-stream: {stages.running()}"
        time.sleep(3.0)
        joined = {n: len(assigned(stages.log(n))) for n in first}
        stages.send("account-c", signal.SIGTERM)  # leaves cleanly: commits, and the group deals again
        assert stages.procs["account-c"].returncode == 0, stages.log("account-c").read_text()[-3000:]
        kb.wait_for(
            lambda: all(len(assigned(stages.log(n))) > joined[n] for n in first),
            180,
            "the first two dealt the third's share after it left",
            lambda: f"running: {stages.running()}",
        )
        stages.start("cluster")  # back from its checkpoint: the contexts come, every stage drains
        stages.finish()
        # nothing lost, and nothing counted twice: no (alert_id, revision) with two bodies, and every
        # body is replay's (the counts are in the evidence)
        compare([r.value for r in kb.read_topic(broker.bootstrap, kb.ALERTS)], ref)


@pytest.mark.kafka
def test_a_share_dealt_to_a_member_that_never_reads_it_is_read_before_the_others_exit(
    day: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """``--drain`` ends a member when the group's partitions are drained, not its share
    (``runtime/stream/drain.py``): a share dealt to a member that never reads it (a member killed after
    it joined, until it expires) is read by a member still there once that member is gone."""
    events_file, ref = day
    spook = tmp_path / "ghost.log"
    with kb.EmbeddedBroker() as broker:
        kb.make_topics(broker.bootstrap, extra={CONTEXTS: 1})
        kb.produce_events(broker.bootstrap, kb.read_events(events_file))
        settings = kb.stream_settings(
            broker.bootstrap, tmp_path / "state", max_poll_records=200, commit_interval_s=0.5
        )
        member = ghost(settings, spook)
        try:
            kb.wait_for(lambda: "assigned [0, 1, 2, 3]" in spook.read_text(), 120, "the ghost's first deal")
            stages = Stages(settings, tmp_path)
            try:
                for name, stage in {"cluster": "cluster", "account-a": "account"}.items():
                    stages.start(name, stage)
                # the group deals the four partitions over the ghost and account-a: two each

                def holds() -> str:
                    lines = spook.read_text().splitlines()
                    return lines[-1] if lines else ""

                kb.wait_for(lambda: holds().count(",") == 1, 120, "the deal with account-a: two each", holds)
                # account-a reads its two to the end; it must wait for the ghost's (before: it exited)
                waiting = "waiting for the group's partitions"
                log_a = stages.log("account-a")
                kb.wait_for(
                    lambda: waiting in log_a.read_text() or stages.procs["account-a"].poll() is not None,
                    180,
                    "account-a's share drained",
                )
                assert stages.procs["account-a"].poll() is None, (
                    f"account-a exited with the ghost's share unread: {log_a.read_text()[-2000:]}"
                )
                member.kill()  # gone: the group deals its share again when its session expires
                member.wait(30)
                stages.finish()
                assert [0, 1, 2, 3] in assigned(log_a), (
                    f"account-a never read the ghost's share: {assigned(log_a)}"
                )
                assert "the group's partitions are drained" in log_a.read_text()
                compare([r.value for r in kb.read_topic(broker.bootstrap, kb.ALERTS)], ref)
            finally:
                for proc in stages.procs.values():
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait(30)
        finally:
            if member.poll() is None:
                member.kill()
                member.wait(30)
