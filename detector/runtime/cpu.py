"""CPU time, for benchmarks that report CPU cost per event beside events per second.

Throughput alone hides how busy the machine already is: a stage that keeps both cores busy cannot be
sped up by moving work to another thread or process, only by doing less. Every figure here is CPU
seconds (user plus system, all threads of the process).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def own_seconds() -> float:
    """CPU seconds used so far by this process, all threads."""
    return time.process_time()


def pid_seconds(pid: int) -> float | None:
    """CPU seconds used so far by process ``pid`` (user plus system; Linux ``/proc``), None if unknown."""
    return _stat_seconds(Path(f"/proc/{pid}/stat"))


def _stat_seconds(stat: Path) -> float | None:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the command name: state is field 3, utime 14 and stime 15 (1-based, see proc(5))
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_seconds(native_id: int | None) -> float | None:
    """CPU seconds used so far by thread ``native_id`` of this process (Linux ``/proc``), None if unknown."""
    if native_id is None:
        return None
    return _stat_seconds(Path(f"/proc/self/task/{native_id}/stat"))  # /proc/TID/stat: the whole process
