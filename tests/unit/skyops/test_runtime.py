"""The process runtime: both event loops run a main coroutine, and settling the heap hides it from the collector."""

from __future__ import annotations

import asyncio
import gc

import pytest

from skyops import runtime
from skyops.settings import Settings


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_run_returns_the_coroutines_result_on_either_loop(loop: runtime.EventLoopKind) -> None:
    async def main() -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    module = runtime.run(main(), loop)
    assert module.startswith("uvloop") == (loop == "uvloop")


def test_settle_heap_freezes_what_is_alive_and_later_garbage_is_still_collected() -> None:
    try:
        runtime.settle_heap()
        assert gc.get_freeze_count() > 0
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # made after the freeze: collected as usual
    finally:
        gc.unfreeze()


def test_the_event_loop_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().event_loop == "uvloop"
    monkeypatch.setenv("SKYOPS_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"
    monkeypatch.setenv("SKYOPS_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()
