"""Engines stop once the run's seeds are all generated, before Ray Data ends their actors.

Ray kills an exiting actor's child processes (vLLM's engine) before the actor's shutdown hook runs, so the engine
actors stop their engines themselves while they still run, coordinated through the run's state actor. These tests
run that protocol in one event loop, with the state actor's class in this process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa

from generation.actor import GenerateActor
from generation.recipes import build_recipe
from generation.state import RunStateActor
from rayjobs.rows import SEED_SCHEMA, row_schema


class _Handle:
    """An actor handle over a local object: ``handle.method.remote(...)`` schedules the call on the running loop."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)

        class _Method:
            @staticmethod
            def remote(*args: Any, **kwargs: Any) -> asyncio.Future:
                result = method(*args, **kwargs)
                if asyncio.iscoroutine(result):
                    return asyncio.ensure_future(result)
                future = asyncio.get_running_loop().create_future()
                future.set_result(result)
                return future

        return _Method


class _Engine:
    """The dry-run engine, counting its shutdowns."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.shutdowns = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def shutdown(self) -> None:
        self.shutdowns += 1


def _state(expected: int) -> RunStateActor:
    return RunStateActor.__ray_actor_class__(expected_seeds=expected)


def _actor(state: Any) -> tuple[GenerateActor, _Engine]:
    recipe = {"name": "template", "messages": [{"role": "user", "content": "Say {instruction}"}]}
    actor = GenerateActor(
        model={"engine": "dry_run", "name": "dry"},
        recipe=recipe,
        run_name="r",
        run_seed=0,
        schema=row_schema(build_recipe(recipe).columns),
        state=state,
    )
    actor.engine = engine = _Engine(actor.engine)
    return actor, engine


def _batch(*ids: str) -> pa.Table:
    return pa.table([list(ids), [f'{{"instruction": "hi {i}"}}' for i in ids], [""] * len(ids)], schema=SEED_SCHEMA)


def test_a_batch_counts_once_and_the_expected_total_wakes_the_waiters():
    async def scenario() -> None:
        state = _state(expected=3)
        waiter = asyncio.ensure_future(state.wait_generated())
        assert state.mark_generated("a", 2) is False
        assert state.mark_generated("a", 2) is False  # the same batch run twice by Ray
        await asyncio.sleep(0)
        assert not waiter.done()
        assert state.mark_generated("c", 1) is True
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())


def test_waiting_for_engines_returns_those_still_running_after_the_timeout():
    async def scenario() -> None:
        state = _state(expected=1)
        state.engine_started("x")
        state.engine_started("y")
        state.engine_stopped("x")
        assert await state.wait_engines_stopped(0.1, poll_s=0.01) == ["y"]
        asyncio.get_running_loop().call_later(0.05, state.engine_stopped, "y")
        assert await state.wait_engines_stopped(5, poll_s=0.01) == []

    asyncio.run(scenario())


def test_the_last_batch_returns_only_after_every_engine_stopped_the_idle_one_included():
    async def scenario() -> None:
        state = _Handle(_state(expected=3))
        first, first_engine = _actor(state)
        last, last_engine = _actor(state)
        out = await first(_batch("a", "b"))
        assert out.num_rows == 2 and first_engine.shutdowns == 0  # seeds still to generate: the engine stays up
        out = await last(_batch("c"))
        assert out.num_rows == 1
        assert (first_engine.shutdowns, last_engine.shutdowns) == (1, 1)
        assert first.engine is None and last.engine is None

    asyncio.run(scenario())


def test_a_batch_run_again_after_the_stop_gets_a_fresh_engine():
    async def scenario() -> None:
        state = _Handle(_state(expected=1))
        actor, engine = _actor(state)
        await actor(_batch("a"))
        assert engine.shutdowns == 1 and actor.engine is None
        out = await actor(_batch("a"))  # Ray lost the output and runs the batch again
        assert out.num_rows == 1 and set(out.column("status").to_pylist()) == {"ok"}

    asyncio.run(scenario())
