"""A caching client around any engine: completions content-addressed, replayed by a later run that asks the same.

The key covers what determines a completion: the engine's identity (its weights and the arguments that change
outputs, or an HTTP model and base URL: computed by rayjobs/), the call (chat messages, a prompt, or the choices to
score), ``n``, the JSON schema, every sampling parameter, the run seed, the seed's id and how many identical calls
the seed made before this one (a recipe asking twice for the same thing gets two distinct samples, the same two on
every run). Errors are never stored. The store is handed in (rayjobs/cache.py): a recipe never sees it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Protocol

from generation.engines.base import Completion, EngineClient, Messages

# What a stored completion keeps (its role, time and retries belong to the call that made it).
STORED = ("texts", "prompt_tokens", "completion_tokens", "logprobs", "scores")


class CompletionStore(Protocol):
    """Where cached completions live: ``get`` answers from what was loaded, ``put`` keeps a new one."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


def request_key(identity: str, seed_scope: str, call: str, request: dict[str, Any]) -> str:
    """The key of a request before its occurrence index (JSON with sorted keys, hashed)."""
    text = json.dumps([identity, seed_scope, call, request], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachingClient:
    """``engine`` as one seed's recipe sees it with a cache: a stored completion is replayed (``cached`` set), any
    other call goes to the engine and its completion is stored unless it is an error. ``refresh``: never replay, but
    store (``cache.mode=refresh``)."""

    def __init__(
        self, engine: EngineClient, store: CompletionStore, identity: str, seed_scope: str, refresh: bool = False
    ) -> None:
        self._engine, self._store, self._identity, self._scope = engine, store, identity, seed_scope
        self._refresh = refresh
        self._seen: Counter = Counter()
        self.model_name = engine.model_name

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    def _key(self, call: str, request: dict[str, Any]) -> str:
        base = request_key(self._identity, self._scope, call, request)
        occurrence = self._seen[base]
        self._seen[base] += 1
        return f"{base}-{occurrence}"

    async def _cached(self, call: str, request: dict[str, Any], compute: Any) -> Completion:
        key = self._key(call, request)
        stored = None if self._refresh else self._store.get(key)
        if stored is not None:
            return Completion(**{k: stored.get(k) for k in STORED}, cached=True)
        done = await compute()
        if done.ok:
            self._store.put(key, {k: v for k, v in asdict(done).items() if k in STORED})
        return done

    async def chat(
        self, messages: Messages, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        request = {"messages": messages, "n": n, "json_schema": json_schema, "sampling": sampling}
        return await self._cached(
            "chat", request, lambda: self._engine.chat(messages, n=n, json_schema=json_schema, **sampling)
        )

    async def generate(
        self, prompt: str, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        request = {"prompt": prompt, "n": n, "json_schema": json_schema, "sampling": sampling}
        return await self._cached(
            "generate", request, lambda: self._engine.generate(prompt, n=n, json_schema=json_schema, **sampling)
        )

    async def score(self, messages: Messages, choices: Sequence[str]) -> Completion:
        request = {"messages": messages, "choices": list(choices)}
        return await self._cached("score", request, lambda: self._engine.score(messages, choices))

    def shutdown(self) -> None:
        pass  # the engine belongs to its owner, not to one seed's view of it
