"""Giving memory back between units of work (issue 13, round 20).

After a replay about 300 MB of the RSS was no live object but pages the allocators keep (round 19):
Arrow's mimalloc pool, which decodes the Parquet pieces, held 119 MB with nothing allocated. The engine
calls ``after_pass`` at the end of every pass over closed ticks (replay and daemon alike), so what a
pass freed goes back to the system before the next one instead of when the pool gets round to it.
Nothing here changes what the engine computes: alerts are the same bytes.
"""

from __future__ import annotations

import sys


def after_pass(release: bool) -> bool:
    """Hand Arrow's unused pages back (``release``: ``EngineSettings.release_memory``); True if asked.

    Arrow is asked only if something imported it (the Parquet reader, a ``to_arrow``): a process that
    never loaded it has nothing in its pool, and importing it here would cost more than it gives.
    """
    arrow = sys.modules.get("pyarrow")
    if not release or arrow is None:
        return False
    arrow.default_memory_pool().release_unused()
    return True
