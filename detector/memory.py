"""Giving memory back between units of work (issue 13, round 20).

After a replay about 300 MB of the RSS was no live object but pages the allocators keep (round 19):
Arrow's mimalloc pool, which decodes the Parquet pieces, held 119 MB with nothing allocated. The engine
calls ``after_pass`` at the end of every pass over closed ticks (replay and daemon alike), so what a
pass freed goes back to the system before the next one instead of when the pool gets round to it.
``allocator_env`` tells polars' jemalloc to hand freed pages back sooner; it must run before polars is
imported (the command line's entry, ``detector.cli``). Nothing here changes what the engine computes:
alerts are the same bytes.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping

#: polars reads this variable when it is imported and appends it to its own jemalloc options.
JEMALLOC_VARIABLE = "_RJEM_MALLOC_CONF"


def allocator_env(environ: MutableMapping[str, str]) -> str | None:
    """Set ``_RJEM_MALLOC_CONF`` from ``AllocatorSettings.jemalloc_conf`` (``DETECTOR_JEMALLOC_CONF``)
    in ``environ``; the value set, or None where nothing was: the operator set the variable (theirs
    wins), the setting is empty, or polars is already loaded (too late: its allocator has started)."""
    from detector.settings import AllocatorSettings

    if JEMALLOC_VARIABLE in environ or "polars" in sys.modules:
        return None
    conf = AllocatorSettings().jemalloc_conf.strip()
    if not conf:
        return None
    environ[JEMALLOC_VARIABLE] = conf
    return conf


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
