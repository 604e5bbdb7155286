"""A run's engines by role: the generator (the ``model`` group) and the roles under ``engines.<role>``.

A recipe gets one ``Engines``: it is the generator's client, and ``engines.role("judge")`` is the judge's. A role the
run does not configure is the generator under that role's name, so every recipe runs with one model. Each call is
stamped with the role that made it and its wall time, so the per-role figures (calls, tokens, errors, retries,
seconds) can be summed from the rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from generation.engines import Completion, EngineClient, Messages, build_engine
from generation.engines.cache import CachingClient
from generation.engines.pool import PoolClient

GENERATOR = "generator"


def model_key(model: Mapping[str, Any]) -> str:
    """Equal model configs have equal keys: roles with equal configs share one engine."""
    return json.dumps(model, sort_keys=True, default=str)


def role_models(model: dict[str, Any], engines: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Role → model config: the generator first, then each configured role; a role named like the generator or
    without an ``engine`` is a config error."""
    roles = {GENERATOR: model}
    for name, config in sorted((engines or {}).items()):
        if name == GENERATOR:
            raise ValueError(f"engines.{GENERATOR} is the `model` group itself; choose it with model=<name>")
        if not isinstance(config, Mapping) or not config.get("engine"):
            raise ValueError(
                f"engines.{name} must be a model config with an `engine` (choose one with +model@engines.{name}=<name>)"
                f", got {config!r}"
            )
        roles[name] = dict(config)
    return roles


class RoleClient:
    """One engine as one role sees it: every completion carries the role's name and the call's wall time."""

    def __init__(self, role: str, engine: EngineClient) -> None:
        self.role_name, self._engine = role, engine
        self.model_name = engine.model_name

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    async def _timed(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Completion:
        started = time.perf_counter()
        done = await call(*args, **kwargs)
        done.role, done.seconds = self.role_name, time.perf_counter() - started
        return done

    async def chat(
        self, messages: Messages, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        return await self._timed(self._engine.chat, messages, n=n, json_schema=json_schema, **sampling)

    async def generate(
        self, prompt: str, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        return await self._timed(self._engine.generate, prompt, n=n, json_schema=json_schema, **sampling)

    async def score(self, messages: Messages, choices: Sequence[str]) -> Completion:
        return await self._timed(self._engine.score, messages, choices)


class Engines(RoleClient):
    """The generator's client that also answers ``role(name)``. ``clients``: role → engine, the generator included;
    roles holding the same engine object share it (and it is shut down once)."""

    def __init__(self, clients: Mapping[str, EngineClient]) -> None:
        if GENERATOR not in clients:
            raise ValueError(f"Engines needs a {GENERATOR!r} client, got roles {sorted(clients)}")
        super().__init__(GENERATOR, clients[GENERATOR])
        self._clients = dict(clients)
        self._roles: dict[str, RoleClient] = {GENERATOR: self}

    def role(self, name: str) -> RoleClient:
        """The client of role ``name``; the generator's engine (booked as ``name``) when the run does not set it."""
        if name not in self._roles:
            self._roles[name] = RoleClient(name, self._clients.get(name, self._clients[GENERATOR]))
        return self._roles[name]

    def configured(self, name: str) -> bool:
        """Whether the run gives role ``name`` an engine of its own config (recipes pick fallbacks with it)."""
        return name in self._clients

    def cached(self, store: Any, identities: Mapping[str, str], seed_scope: str, refresh: bool = False) -> Engines:
        """These engines as one seed sees them through the completion cache (generation/engines/cache.py): roles
        sharing an engine share its cache view, so identical requests of two roles count as two occurrences."""
        views: dict[int, CachingClient] = {}
        clients = {}
        for role, engine in self._clients.items():
            if id(engine) not in views:
                views[id(engine)] = CachingClient(engine, store, identities[role], seed_scope, refresh)
            clients[role] = views[id(engine)]
        return Engines(clients)

    def shutdown(self) -> None:
        for engine in {id(e): e for e in self._clients.values()}.values():
            engine.shutdown()


def build_engines(
    models: Mapping[str, dict[str, Any]],
    seed: int = 0,
    budgets: Mapping[str, Any] | None = None,
    pools: Mapping[str, list[Any]] | None = None,
) -> Engines:
    """One engine per distinct model config of ``models`` (role → config, the generator included). ``budgets``:
    model key → the run-wide request budget of an HTTP engine; ``pools``: model key → the replicas of the engine
    pool serving it (those models are called there, not loaded here)."""
    built: dict[str, EngineClient] = {}
    clients = {}
    try:
        for name, config in models.items():
            key = model_key(config)
            if key in (pools or {}) and key not in built:
                built[key] = PoolClient(config["name"], pools[key])
            if key not in built:
                built[key] = build_engine(config, seed, budget=(budgets or {}).get(key))
            clients[name] = built[key]
    except BaseException:
        for engine in built.values():  # a later role failed: the engines already started must not leak
            engine.shutdown()
        raise
    return Engines(clients)
