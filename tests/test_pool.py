"""A role's engine pool on a real local Ray with the dry-run engine: callers spread over the replicas, the pool's
engines stop through the end-of-run protocol, and a pool whose engine cannot start fails the batch, not each seed."""

from __future__ import annotations

import asyncio

import pytest
import ray

from generation.engines import EngineUnavailable
from generation.engines.pool import PoolClient
from generation.state import RunStateActor
from rayjobs.resources import start_pools, stop_pools
from tests.conftest import make_config


def _model(**changes):
    return {**make_config(["model=dry_run"])["model"], "num_cpus": 0.1, **changes}


def test_callers_share_the_replicas_and_the_engines_stop_once_every_seed_is_generated(ray_session):
    state = RunStateActor.remote(expected_seeds=4)
    pools = start_pools({"large": _model(name="big", replicas=2)}, seed=0, state=state)
    [replicas] = pools.values()
    client = PoolClient("big", replicas)

    async def calls():
        messages = [{"role": "user", "content": "hello"}]
        done = await asyncio.gather(*(client.chat(messages, n=2, max_tokens=8) for _ in range(6)))
        scored = await client.score(messages, ["yes", "no"])
        return done, scored

    done, scored = asyncio.run(calls())
    assert all(d.ok and len(d.texts) == 2 for d in done) and abs(sum(scored.scores.values()) - 1) < 1e-9
    assert ray.get(state.wait_engines_stopped.remote(0.0)) != []  # both replicas registered, still running
    assert ray.get(state.mark_generated.remote("seed-0", 4)) is True
    assert ray.get(state.wait_engines_stopped.remote(10.0)) == []  # each stopped its engine on its own
    with pytest.raises(EngineUnavailable, match="pool engine big has stopped"):
        asyncio.run(client.chat([{"role": "user", "content": "late"}]))
    stop_pools(pools)


def test_a_pool_whose_engine_cannot_start_fails_the_call_as_unavailable(ray_session):
    pools = start_pools({"large": _model(name="broken", engine="grpc")}, seed=0, state=None)
    client = PoolClient("broken", next(iter(pools.values())))
    with pytest.raises(EngineUnavailable, match="pool engine broken failed to start: unknown model.engine 'grpc'"):
        asyncio.run(client.chat([{"role": "user", "content": "hi"}]))
    stop_pools(pools)
