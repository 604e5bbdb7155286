"""Keeping a CPU engine's compute cores for it (rayjobs/cores.py), with real processes and real thread affinity."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from rayjobs.cores import EngineCores, bound_cores, run_processes, supported
from rayjobs.resources import isolated_cpus

CPUS = set(os.sched_getaffinity(0)) if supported() else set()
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="pinning needs a Linux machine with 2 CPUs or more")

# A stand-in for vLLM's compute worker: binds itself to one CPU (after ``delay`` seconds), like its OpenMP threads.
ENGINE = (
    "import os, sys, time; time.sleep(float(sys.argv[2])); os.sched_setaffinity(0, {int(sys.argv[1])}); time.sleep(60)"
)


@pytest.fixture
def children():
    started: list[subprocess.Popen] = []

    def spawn(*args: str) -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, *args]))
        return started[-1]

    yield spawn
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.fixture
def restore_affinity():
    """The test process itself gets pinned: give its threads their CPUs back whatever happens."""
    yield
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), CPUS)
        except OSError:
            continue


def wait_for(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.skipif(not supported(), reason="Linux only")
def test_run_processes_finds_grandchildren():
    grandchild_of = (
        "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(p.pid, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", grandchild_of], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(proc.stdout.readline())
        found = run_processes()
        assert found[0] == os.getpid() and proc.pid in found and grandchild in found
        os.kill(grandchild, 9)
    finally:
        proc.kill()
        proc.wait()


@needs_two
def test_the_engine_keeps_its_cores_and_the_rest_moves_until_the_run_ends(children, restore_affinity):
    core = min(CPUS)
    engine = children("-c", ENGINE, str(core), "0")
    other = children("-c", "import time; time.sleep(60)")
    wait_for(lambda: bound_cores([engine.pid], CPUS) == {engine.pid: {core}})
    cores = EngineCores(CPUS)
    try:
        assert cores.isolate()
        assert cores.engine == {core} and cores.others == CPUS - {core}
        assert os.sched_getaffinity(other.pid) == CPUS - {core}
        assert os.sched_getaffinity(0) == CPUS - {core}  # the driver too, every thread
        assert os.sched_getaffinity(engine.pid) == {core}  # untouched
    finally:
        cores.__exit__(None, None, None)
    assert os.sched_getaffinity(other.pid) == CPUS and os.sched_getaffinity(0) == CPUS
    assert os.sched_getaffinity(engine.pid) == {core}


@needs_two
def test_nothing_moves_before_the_engine_binds_its_threads(children, restore_affinity):
    other = children("-c", "import time; time.sleep(60)")
    cores = EngineCores(CPUS)
    assert not cores.isolate()
    assert os.sched_getaffinity(other.pid) == CPUS and os.sched_getaffinity(0) == CPUS
    assert not cores.engine


@needs_two
def test_the_watcher_acts_once_the_engine_binds(children, restore_affinity):
    core = max(CPUS)
    with EngineCores(CPUS, poll_s=0.05) as cores:
        other = children("-c", "import time; time.sleep(60)")
        children("-c", ENGINE, str(core), "0.5")
        wait_for(lambda: cores.engine == {core})
        assert os.sched_getaffinity(other.pid) == CPUS - {core}
        late = children("-c", "import time; time.sleep(60)")  # started by a pinned process, like Ray's new workers
        assert os.sched_getaffinity(late.pid) == CPUS - {core}
    assert os.sched_getaffinity(other.pid) == CPUS and os.sched_getaffinity(late.pid) == CPUS


def _config(**changes):
    model = {"engine": "vllm", "device": "cpu", "replicas": 1}
    cluster = {"mode": "local", "isolate_engine_cores": True}
    for key, value in changes.items():
        section, _, name = key.partition("__")
        (model if section == "model" else cluster)[name] = value
    return {"model": model, "cluster": cluster}


@needs_two
def test_only_a_local_run_of_one_cpu_vllm_engine_is_isolated():
    assert isolated_cpus(_config()) == CPUS
    for changes in (
        {"cluster__mode": "ray"},
        {"cluster__isolate_engine_cores": False},
        {"model__engine": "dry_run"},
        {"model__device": "gpu"},
        {"model__replicas": 2},
    ):
        assert isolated_cpus(_config(**changes)) is None, changes
    # A role's own vLLM pool is a second CPU engine: both would bind the same cores.
    assert isolated_cpus({**_config(), "engines": {"large": {"engine": "vllm", "source": "other"}}}) is None
    assert isolated_cpus({**_config(), "engines": {"judge": {"engine": "http", "base_url": "http://x"}}}) == CPUS
