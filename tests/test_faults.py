"""Faults with real processes: the CLI in its own process group (its own local Ray), killed or starved mid-run.

After each, the output invariant must hold (tests/invariant.py): every seed in a row, no id twice, the data
directories holding exactly the committed shards. The dry-run engine with a per-call latency stands in for
generation time, so a run lasts long enough to be hit mid-way; every test bounds its waits and kills what it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rayjobs.commit import COMMITS, load_commits
from rayjobs.sink import Sink
from tests.conftest import REPO, write_jsonl
from tests.invariant import assert_invariant

pytestmark = pytest.mark.faults

SEEDS = 80


def _seeds(tmp_path: Path) -> tuple[Path, list[str]]:
    ids = [f"s{i:03d}" for i in range(SEEDS)]
    rows = [{"id": i, "instruction": f"Write about topic {i} in detail."} for i in ids]
    return write_jsonl(tmp_path / "seeds.jsonl", rows), ids


def _command(seeds: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rayjobs.generate",
        "model=dry_run",
        "model.latency_s=0.4",
        "model.batch_size=4",
        "model.max_tasks_in_flight=2",
        "source=jsonl",
        f"source.uri={seeds}",
        "run.name=faults",
        "cluster.progress_bars=false",
        *overrides,
    ]


def _start(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "ab") as out:  # its own session: the driver, its Ray and their children share one group
        return subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_until(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the fault: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout:.0f} s: {log.read_text()[-3000:]}")
        time.sleep(0.3)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        _kill_group(proc)


def _in_session(session: int, marker: str) -> list[int]:
    """Pids of processes in ``session`` whose command line contains ``marker`` (Ray names its workers by actor)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == session and marker in (entry / "cmdline").read_text(errors="replace"):
                found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return found


def test_driver_killed_mid_run_then_the_same_command_completes_it(tmp_path):
    seeds, ids = _seeds(tmp_path)
    sink = Sink(str(tmp_path / "out"))
    command = _command(seeds, f"sink.uri={sink.uri}")
    log = tmp_path / "run.log"
    first = _start(command, log)
    try:
        _wait_until(lambda: len(sink.list(COMMITS)) >= 3, first, 180, log)
        os.kill(first.pid, signal.SIGKILL)  # the driver only; Ray's own processes see it go
        first.wait(timeout=30)
    finally:
        _kill_group(first)
    assert not sink.exists("_SUCCESS")
    committed = {seed for commit in load_commits(sink) for seed in commit.seed_ids}
    assert 0 < len(committed) < SEEDS
    assert _finish(_start(command, log)) == 0, log.read_text()[-3000:]
    counts = assert_invariant(sink, ids)
    summary = json.loads(sink.read_text("run.json"))["summary"]
    assert summary["attempt"] == 2 and summary["resumed_seeds"] >= len(committed) // 2
    assert counts["data"] == 2 * SEEDS  # self_instruct: two samples per seed, none lost, none twice


def test_engine_actor_killed_mid_run_is_restarted_and_the_run_completes(tmp_path):
    seeds, ids = _seeds(tmp_path)
    sink = Sink(str(tmp_path / "out"))
    log = tmp_path / "run.log"
    proc = _start(_command(seeds, f"sink.uri={sink.uri}"), log)
    try:
        _wait_until(lambda: len(sink.list(COMMITS)) >= 2, proc, 180, log)
        [actor] = _in_session(proc.pid, "MapBatches(GenerateActor)")
        os.kill(actor, signal.SIGKILL)
        rc = proc.wait(timeout=300)
    finally:
        _kill_group(proc)
    assert rc == 0, log.read_text()[-3000:]
    assert log.read_text().count("engine dry-run ready") >= 2  # Ray started a fresh engine actor
    assert_invariant(sink, ids)


@pytest.mark.s3
def test_s3_outage_mid_run_is_survived(tmp_path):
    import s3fs

    from tests.s3server import ACCESS_KEY, SECRET_KEY, SeaweedFS

    server = SeaweedFS(tmp_path / "s3")
    endpoint = server.start()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    env["AWS_ENDPOINT_URL"] = endpoint
    options = {"key": ACCESS_KEY, "secret": SECRET_KEY, "endpoint_url": endpoint}
    seeds, ids = _seeds(tmp_path)
    command = _command(seeds, "sink=s3", "sink.uri=s3://outage/run")
    log = tmp_path / "run.log"
    proc = None
    try:
        s3fs.S3FileSystem(skip_instance_cache=True, **options).mkdir("outage")
        sink = Sink("s3://outage/run", options, retry_s=5)
        proc = _start(command, log, env)
        _wait_until(lambda: len(sink.list(COMMITS)) >= 2, proc, 180, log)
        server.stop()
        time.sleep(5)
        server.start()
        rc = _finish(proc)
        if rc != 0:  # allowed: a clear failure, and the same command then finishes the run
            assert "unreachable" in log.read_text() or "Could not connect" in log.read_text()
            rc = _finish(_start(command, log, env))
        assert rc == 0, log.read_text()[-3000:]
        assert "unreachable" in log.read_text()  # the writers saw the outage and waited it out
        assert_invariant(sink, ids)
    finally:
        if proc is not None:
            _kill_group(proc)
        server.stop()


def test_driver_killed_mid_run_against_a_failing_http_judge_then_the_rerun_completes_it_exactly_once(tmp_path):
    from tests.openai_server import FaultServer, serving

    key_env, key = "TEAM_LLM_CREDS", "sk-team-0c1d2e3f4a5b6978"
    seeds, ids = _seeds(tmp_path)
    sink = Sink(str(tmp_path / "out"))
    log = tmp_path / "run.log"
    env = {**os.environ, key_env: key}
    faults = {2: "429", 5: "500", 8: "malformed", 11: "drop", 14: "401"}
    # 5 faults in every 29 requests, 6 retries: a call fails for good with odds about 0.17^7 (1e-3 per run).
    with serving(FaultServer(key=key, faults=faults, every=29, latency_s=0.3)) as server:
        command = _command(
            seeds,
            f"sink.uri={sink.uri}",
            "model.latency_s=0",
            "recipe=critique_revise",
            "+model@engines.judge=openai",
            f"engines.judge.name={server.model}",
            f"engines.judge.base_url={server.base_url}",
            f"engines.judge.api_key_env={key_env}",
            "engines.judge.max_concurrency=4",
        )
        first = _start(command, log, env)
        try:
            _wait_until(lambda: len(sink.list(COMMITS)) >= 3, first, 180, log)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            _kill_group(first)
        committed = {seed for commit in load_commits(sink) for seed in commit.seed_ids}
        assert 0 < len(committed) < SEEDS and not sink.exists("_SUCCESS")
        assert _finish(_start(command, log, env)) == 0, log.read_text()[-3000:]
    counts = assert_invariant(sink, ids)
    assert sum(counts.values()) == SEEDS  # one row per seed: none lost, none twice
    assert server.seen.peak <= 4
    judge = json.loads(sink.read_text("run.json"))["summary"]["roles"]["judge"]
    assert judge["engine"] == "http" and judge["retries"] > 0
    written = "\n".join(p.read_bytes().decode("utf-8", "replace") for p in Path(sink.uri).rglob("*") if p.is_file())
    assert key not in written and key not in log.read_text()  # the 401s echoed it: masked everywhere


def test_refilter_killed_mid_pass_then_the_same_command_completes_it_exactly_once(tmp_path):
    seeds, ids = _seeds(tmp_path)
    source = Sink(str(tmp_path / "source"))
    log = tmp_path / "run.log"
    generate = _command(seeds, f"sink.uri={source.uri}", "model.latency_s=0", "model.batch_size=2")
    assert _finish(_start(generate, log)) == 0, log.read_text()[-3000:]
    derived = Sink(str(tmp_path / "strict"))
    command = [
        sys.executable, "-m", "rayjobs.refilter", f"src.uri={source.uri}", f"sink.uri={derived.uri}",
        "filters=strict", "block_rows=2", "cluster.progress_bars=false",
    ]  # fmt: skip
    log = tmp_path / "refilter.log"
    first = _start(command, log)
    try:
        _wait_until(lambda: len(derived.list(COMMITS)) >= 3, first, 180, log)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        _kill_group(first)
    committed = {seed for commit in load_commits(derived) for seed in commit.seed_ids}
    assert 0 < len(committed) < SEEDS and not derived.exists("_SUCCESS")
    assert _finish(_start(command, log)) == 0, log.read_text()[-3000:]
    counts = assert_invariant(derived, ids)
    source_counts = assert_invariant(source, ids)
    assert sum(counts.values()) == sum(source_counts.values())  # every source row once: none lost, none twice
    summary = json.loads(derived.read_text("run.json"))["summary"]
    assert summary["attempt"] == 2 and summary["resumed_seeds"] > 0
    assert "engine" not in log.read_text().lower()  # no engine started, in either attempt
