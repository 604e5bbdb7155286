"""Scale and memory: N seeds through the dry-run engine, the default filters and a local sink, in one process.

Prints wall time, seeds/s and rows/s, peak RSS of the driver and of the Ray worker processes (each and summed), and
the object store's peak use, sampled every 0.5 s. Run two sizes to see whether memory grows with the input:

    .venv/bin/python benchmarks/scale.py --seeds 100000
    .venv/bin/python benchmarks/scale.py --seeds 1000000

Target (issue 7): peak RSS < 4 GiB, flat between 100k and 1M seeds. The last line is a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.engine_overhead import compose_config  # noqa: E402

GIB = 1 << 30


class MemorySampler(threading.Thread):
    """Peak RSS of this process and of every Ray worker on the machine, and peak object store use."""

    def __init__(self, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.driver = self.worker_max = self.workers_sum = self.object_store = 0
        self._done = threading.Event()

    def run(self) -> None:
        import ray

        me = psutil.Process()
        while not self._done.wait(self.every_s):
            self.driver = max(self.driver, me.memory_info().rss)
            workers = []
            for proc in me.children(recursive=True):  # Ray's processes: ray.init() started them from here
                try:
                    workers.append(proc.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.worker_max = max([self.worker_max, *workers])
            self.workers_sum = max(self.workers_sum, sum(workers))
            if ray.is_initialized():
                self.object_store = max(self.object_store, _plasma_bytes())

    def stop(self) -> None:
        self._done.set()
        self.join()


def _plasma_bytes() -> int:
    """Bytes in Ray's object store now, from the memory summary Ray's own `ray memory --stats-only` prints."""
    from ray._private.internal_api import memory_summary

    match = re.search(r"Plasma memory usage (\d+) MiB", memory_summary(stats_only=True))
    return int(match.group(1)) << 20 if match else 0


def write_seeds(path: Path, count: int) -> None:
    with open(path, "w") as f:
        for i in range(count):
            f.write(json.dumps({"id": f"s{i:07d}", "instruction": f"Write a short note about item number {i}."}))
            f.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    from rayjobs.pipeline import run

    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds.jsonl"
        write_seeds(seeds, args.seeds)
        config = compose_config(
            [
                "model=dry_run",
                "recipe=template",
                f"model.batch_size={args.batch_size}",
                "source=jsonl",
                f"source.uri={seeds}",
                f"sink.uri={Path(tmp) / 'out'}",
                "run.name=scale",
                "cluster.progress_bars=false",
            ]
        )
        sampler = MemorySampler()
        sampler.start()
        started = time.perf_counter()
        result = run(config)
        wall = time.perf_counter() - started
        sampler.stop()
        files = sum(len(files) for _, _, files in os.walk(Path(tmp) / "out"))
    summary = result.summary
    rows = summary["kept"] + summary["rejected"] + summary["errors"]
    print(
        f"seeds {args.seeds:,}: {wall:.1f} s, {args.seeds / wall:,.0f} seeds/s, {rows / wall:,.0f} rows/s, "
        f"{files:,} files"
    )
    print(
        f"peak RSS: driver {sampler.driver / GIB:.2f} GiB, largest worker {sampler.worker_max / GIB:.2f} GiB, "
        f"all Ray processes {sampler.workers_sum / GIB:.2f} GiB; object store peak {sampler.object_store / GIB:.2f} GiB"
    )
    peak = max(sampler.driver, sampler.worker_max)
    print(
        f"summary: {args.seeds:,} seeds in {wall:.1f} s ({args.seeds / wall:,.0f}/s); peak process RSS "
        f"{peak / GIB:.2f} GiB (target < 4); object store {sampler.object_store / GIB:.2f} GiB"
    )


if __name__ == "__main__":
    main()
