"""Run-wide state that recipes share across all engine actors: growing pools, once-per-run results, artifacts.

On Ray it lives in one actor per run; in unit tests (no Ray) in this process. Recipes only see ``SharedState``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import ray

from generation.novelty import NoveltyPool

_FAILED = "__failed__"
ARTIFACT = "artifact/"  # values under keys with this prefix are written to the sink as artifacts/<name>.json
FIRST_SAMPLE_AT = "first_sample_at"  # wall clock of the run's first finished sample (start-up cost, in run.json)
ENGINE_READY_AT = "engine_ready_at"  # wall clock when the first engine could take requests
# Completion tokens and samples the engines generated per wall-clock second: the report's throughput curve.
GENERATED_TOKENS, GENERATED_SAMPLES = "generated_tokens_by_second", "generated_samples_by_second"


@ray.remote(num_cpus=0)
class RunStateActor:
    """Args:
    restored: values an earlier attempt of the run computed (artifacts): they count as computed already.
    persist: called with (key, value) for every artifact as soon as it is put, so a crash does not lose it.
    expected_seeds: how many seeds the engines will generate in this attempt; once all are, the engines stop.
    """

    def __init__(
        self,
        restored: dict[str, Any] | None = None,
        persist: Callable[[str, Any], None] | None = None,
        expected_seeds: int | None = None,
    ) -> None:
        self._values: dict[str, Any] = dict(restored or {})
        self._lists: dict[str, list] = {}
        self._claimed: set[str] = set(self._values)
        self._persist = persist
        self._expected = expected_seeds
        self._batches: set[str] = set()  # the first seed id of each generated batch
        self._generated = 0
        self._all_generated = asyncio.Event()
        self._engines: set[str] = set()  # engines that will stop themselves once every seed is generated
        self._pools: dict[str, NoveltyPool] = {}

    def claim(self, key: str) -> bool:
        """True for the first caller only: that caller computes ``key``; the others wait for ``get``."""
        if key in self._claimed:
            return False
        self._claimed.add(key)
        return True

    def put(self, key: str, value: Any) -> None:
        self._values[key] = value
        failed = isinstance(value, dict) and _FAILED in value
        if self._persist is not None and key.startswith(ARTIFACT) and not failed:
            self._persist(key, value)

    def accumulate(self, key: str, amounts: dict[str, float]) -> None:
        """Add ``amounts`` into the number map at ``key`` (workers report counters and timings this way)."""
        totals = self._values.setdefault(key, {})
        for name, amount in amounts.items():
            totals[name] = totals.get(name, 0) + amount

    def put_once(self, key: str, value: Any) -> None:
        """Keep the first value ever put under ``key`` (the earliest report wins)."""
        self._values.setdefault(key, value)

    def advance(self, key: str, step: int) -> int:
        """A run-wide cursor: returns its position and moves it by ``step`` (one caller at a time)."""
        start = self._values.get(key, 0)
        self._values[key] = start + step
        return start

    def get(self, key: str) -> Any:
        return self._values.get(key)

    def extend(self, key: str, items: list, cap: int | None) -> int:
        pool = self._lists.setdefault(key, [])
        room = len(items) if cap is None else max(0, cap - len(pool))
        pool.extend(items[:room])
        return len(pool)

    def sample(self, key: str, k: int, seed: int) -> list:
        pool = self._lists.get(key, [])
        return random.Random(seed).sample(pool, min(k, len(pool)))

    def values(self) -> dict[str, Any]:
        return dict(self._values)

    # Novelty pools (self_instruct's task pool): ROUGE-L checks against every text already pooled, run here so that
    # a check and the addition it allows are one step for the whole run, whichever engine actor asks.

    def start_novelty_pool(self, key: str, texts: list[tuple[str, str]], threshold: float) -> None:
        """The pool ``key`` with its starting texts; a pool that exists already is left as it is."""
        if key not in self._pools:
            self._pools[key] = NoveltyPool(threshold, texts=texts)

    def offer_novel(
        self, key: str, text_id: str, text: str, also: tuple[str, Any, int | None] | None = None
    ) -> tuple[float, str | None]:
        """The highest ROUGE-L of ``text`` with the pool and the id of that text; ``text`` joins when novel, and then
        so does ``also`` = (list key, item, cap) in that list (one call per sample instead of two)."""
        pool = self._pools[key]
        score, near = pool.offer(text_id, text)
        if also is not None and score < pool.threshold:
            self.extend(also[0], [also[1]], also[2])
        return score, near

    def add_to_novelty_pool(self, key: str, texts: list[tuple[str, str]]) -> int:
        """Pool ``texts`` unchecked (a resumed run replays what its earlier attempts pooled); returns the pool size."""
        self._pools[key].add(texts)
        return len(self._pools[key])

    # Engines stop before Ray Data ends their actors: Ray kills an exiting worker's child processes (vLLM's) before
    # the actor's own shutdown hook runs, which left vLLM's shared memory in /dev/shm and a resource_tracker trace.

    def mark_generated(self, batch_key: str, seeds: int) -> bool:
        """An engine finished a batch (keyed by its first seed id, so a batch Ray runs twice counts once); True
        once every expected seed is generated, which also wakes every ``wait_generated``."""
        if batch_key not in self._batches:
            self._batches.add(batch_key)
            self._generated += seeds
        if self._expected is not None and self._generated >= self._expected:
            self._all_generated.set()
        return self._all_generated.is_set()

    async def wait_generated(self) -> None:
        await self._all_generated.wait()

    def engine_started(self, engine_id: str) -> None:
        self._engines.add(engine_id)

    def engine_stopped(self, engine_id: str) -> None:
        self._engines.discard(engine_id)

    async def wait_engines_stopped(self, timeout_s: float, poll_s: float = 0.05) -> list[str]:
        """Waits until every started engine has stopped, at most ``timeout_s``; returns those still running."""
        deadline = time.monotonic() + timeout_s
        while self._engines and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)
        return sorted(self._engines)


class _LocalState:
    """The same calls as ``RunStateActor``, in this process (unit tests, dry runs without Ray)."""

    def __init__(self) -> None:
        self._impl = RunStateActor.__ray_actor_class__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._impl, name)


class SharedState:
    """What a recipe sees: async calls on run-wide state, local or backed by a ``RunStateActor``."""

    def __init__(self, handle: Any = None) -> None:
        self._handle = handle
        self._local = _LocalState() if handle is None else None

    async def _call(self, method: str, *args: Any) -> Any:
        if self._local is not None:
            return getattr(self._local, method)(*args)
        return await getattr(self._handle, method).remote(*args)

    async def extend(self, key: str, items: list, cap: int | None = None) -> int:
        return await self._call("extend", key, items, cap)

    async def sample(self, key: str, k: int, seed: int) -> list:
        return await self._call("sample", key, k, seed)

    async def advance(self, key: str, step: int) -> int:
        return await self._call("advance", key, step)

    async def put(self, key: str, value: Any) -> None:
        await self._call("put", key, value)

    async def compute_once(self, key: str, compute, poll_s: float = 0.5, timeout_s: float = 3600) -> Any:
        """The run-wide value of ``key``: the first caller computes it, every other caller waits for it."""
        if await self._call("claim", key):
            try:
                value = await compute()
            except Exception as exc:  # waiters must learn it failed rather than wait forever
                await self.put(key, {_FAILED: f"{type(exc).__name__}: {exc}"})
                raise
            await self.put(key, value)
            return value
        waited = 0.0
        while (value := await self._call("get", key)) is None:
            if waited > timeout_s:
                raise TimeoutError(f"waited {timeout_s:.0f} s for another worker to compute {key!r}")
            await asyncio.sleep(poll_s)
            waited += poll_s
        if isinstance(value, dict) and _FAILED in value:
            raise RuntimeError(f"{key} could not be computed: {value[_FAILED]}")
        return value

    async def values(self) -> dict[str, Any]:
        return await self._call("values")

    async def start_novelty_pool(self, key: str, texts: list[tuple[str, str]], threshold: float) -> None:
        await self._call("start_novelty_pool", key, texts, threshold)

    async def offer_novel(
        self, key: str, text_id: str, text: str, also: tuple[str, Any, int | None] | None = None
    ) -> tuple[float, str | None]:
        return tuple(await self._call("offer_novel", key, text_id, text, also))

    async def add_to_novelty_pool(self, key: str, texts: list[tuple[str, str]]) -> int:
        return await self._call("add_to_novelty_pool", key, texts)
