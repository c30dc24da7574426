"""Races between processes as `skyops run` starts them: spawned interpreters released together by a barrier."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def at_once(target: Callable[..., None], args: tuple[Any, ...], *, processes: int, deadline_s: float) -> list[str]:
    """Run `target(*args, barrier, results)` in `processes` spawned processes; what each put on `results`.

    Each target waits on the barrier before the raced step and puts "ok" or its error on the queue. Spawned, not
    forked: no copy of this process's connections. A process that hangs fails the test after `deadline_s`.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results), daemon=True) for _ in range(processes)]
    try:
        for p in procs:
            p.start()
        return [results.get(timeout=deadline_s) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
