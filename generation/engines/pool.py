"""A role's own model as a pool of engine actors, shared by every generate actor.

A role whose model differs from the generator's (a large model in a cascade, a teacher) should not be loaded once per
generate actor: ``EnginePool`` holds one engine per replica (rayjobs/ makes it a Ray actor and gives it its GPUs), and
``PoolClient`` is the client every generate actor's recipes call, spreading requests over the replicas, least busy
first. Calls are async on both sides, so the pool engine batches the in-flight requests of every caller. A pool engine
stops through the run's end-of-run protocol (generation/state.py), like the generator's: while its actor still runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

from generation.engines.base import Completion, EngineUnavailable, Messages, estimated_tokens


class EnginePool:
    """One replica of a role's engine. Args:
    model: the role's model config.
    seed: the run seed (engines are seeded, never requests).
    state: the run's ``RunStateActor`` (None outside a run: the engine stops with ``stop``).
    """

    def __init__(self, model: dict[str, Any], seed: int = 0, state: Any = None) -> None:
        self.model, self.seed, self.state = model, seed, state
        self.engine: Any = None
        self._ready: asyncio.Task | None = None
        self._stopper: asyncio.Task | None = None  # held: the event loop keeps only a weak reference to a task

    async def start(self) -> None:
        """Registers the engine with the run and starts building it; returns at once (calls wait for it). rayjobs/
        starts every replica before generation; a replica Ray restarted starts on its first call."""
        from generation.engines import build_engine

        if self._ready is not None:
            return
        os.environ.update({k: str(v) for k, v in (self.model.get("env") or {}).items()})
        started = time.perf_counter()

        async def build() -> None:
            self.engine = await asyncio.to_thread(build_engine, self.model, self.seed)
            print(
                f"synthray: pool engine {self.model['name']} ready in {time.perf_counter() - started:.1f} s", flush=True
            )

        self._ready = asyncio.create_task(build())  # before any await: a concurrent call must not build a second
        if self.state is not None:
            engine_id = _actor_id()
            await self.state.engine_started.remote(engine_id)
            self._stopper = asyncio.create_task(self._stop_when_generated(engine_id))

    async def _stop_when_generated(self, engine_id: str) -> None:
        await self.state.wait_generated.remote()
        if self._ready is not None:
            await asyncio.gather(self._ready, return_exceptions=True)
        self.stop()
        self.state.engine_stopped.remote(engine_id)

    async def _engine(self) -> Any:
        await self.start()
        try:
            await self._ready
        except Exception as exc:  # the run stops with this message rather than one error row per seed
            raise EngineUnavailable(f"pool engine {self.model['name']} failed to start: {exc}") from exc
        if self.engine is None:
            raise EngineUnavailable(f"pool engine {self.model['name']} has stopped")
        return self.engine

    async def chat(self, messages: Messages, n: int, json_schema: dict | None, sampling: dict) -> Completion:
        return await (await self._engine()).chat(messages, n=n, json_schema=json_schema, **sampling)

    async def generate(self, prompt: str, n: int, json_schema: dict | None, sampling: dict) -> Completion:
        return await (await self._engine()).generate(prompt, n=n, json_schema=json_schema, **sampling)

    async def score(self, messages: Messages, choices: list[str]) -> Completion:
        return await (await self._engine()).score(messages, choices)

    def stop(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown()

    def __del__(self) -> None:
        if hasattr(self, "engine"):  # not on Ray's class wrapper, an instance that never ran __init__
            self.stop()


def _actor_id() -> str:
    """Ray's id of this actor (it survives a restart), or this process outside Ray."""
    import ray

    return ray.get_runtime_context().get_actor_id() if ray.is_initialized() else f"pid-{os.getpid()}"


class PoolClient:
    """The client of a role served by an ``EnginePool`` of actors (``replicas``: their Ray handles)."""

    def __init__(self, model_name: str, replicas: Sequence[Any]) -> None:
        if not replicas:
            raise ValueError(f"the engine pool of {model_name} has no replicas")
        self.model_name, self.replicas = model_name, list(replicas)
        self._busy = [0] * len(self.replicas)

    def count_tokens(self, text: str) -> int:
        return estimated_tokens(text)  # The tokenizer lives with the pool's engine

    async def _call(self, method: str, *args: Any) -> Completion:
        from ray.exceptions import RayActorError

        replica = min(range(len(self.replicas)), key=self._busy.__getitem__)
        self._busy[replica] += 1
        try:
            return await getattr(self.replicas[replica], method).remote(*args)
        except RayActorError as exc:  # the replica died: Ray restarts it, and the batch is retried
            raise EngineUnavailable(f"engine pool replica of {self.model_name} died: {exc}") from exc
        finally:
            self._busy[replica] -= 1

    async def chat(
        self, messages: Messages, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        return await self._call("chat", messages, n, json_schema, sampling)

    async def generate(
        self, prompt: str, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        return await self._call("generate", prompt, n, json_schema, sampling)

    async def score(self, messages: Messages, choices: Sequence[str]) -> Completion:
        return await self._call("score", messages, list(choices))

    def shutdown(self) -> None:
        pass  # the pool's engines stop with the run (EnginePool), not with one of their callers
