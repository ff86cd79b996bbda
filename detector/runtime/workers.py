"""Worker processes for decoding ahead of the engine (the daemon's polls, replay's Parquet chunks).

Decoding and prompt features are pure functions of the input, so they can run in another process
while the engine, whose Python holds the interpreter lock, works on the previous batch. Workers are
spawned (the parent has polars, ONNX and Kafka threads running, so fork is unsafe), started at once
rather than on the first job, and leave stopping to their parent: Ctrl-C, SIGTERM and SIGHUP reach the
whole process group, and a worker that died of one would fail the batch its parent is finishing (the
parent shuts the pool down on its way out). A worker whose parent died (kill -9, out of memory) exits
within a second: its task queue would never close, since the worker holds both ends.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

#: Signals a terminal or a service manager sends to the whole process group (SIGHUP: the daemon's
#: "reload rules"). The parent handles them; a worker must not die of them.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
#: How often a worker checks that the process that started it is still alive.
PARENT_CHECK_S = 1.0


def spawn_pool(workers: int, warm: Callable[[], None]) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each started now and warmed by ``warm`` (imports,
    compiled patterns). They are born with the stop signals blocked, so a Ctrl-C during their start-up
    cannot kill them before they ignore it."""
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        for _ in range(workers):
            pool.submit(warm)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return pool


def pool_pids(pool: ProcessPoolExecutor) -> list[int]:
    """Process ids of the pool's live workers (there is no public API for them)."""
    return list(getattr(pool, "_processes", {}) or {})


def _worker_init(parent: int) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
