"""synthray vs Ray Data LLM (``ray.data.llm.build_processor``) on the same prompts, sampling and model, one process.

    .venv/bin/python benchmarks/vs_ray_data_llm.py [--prompts 256] [--max-tokens 64]

Both sides count start-up (Ray start, engine load) and all output tokens, and each starts its own Ray. Ray Data LLM is
tuned as ANCHORS.md found it needs on a 2-core CPU machine: a logical GPU for its engine stage, 0.1 CPU for its
chat-template / tokenize / detokenize / pre- and post-processing stages, batch 64, engine metrics off. synthray runs
the ``template`` recipe (one chat call per prompt) with the default filters and the Parquet sink.
Last line: ``ratio <synthray tokens/s / ray.data.llm tokens/s>`` (target >= 1.1).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.engine_overhead import report, run_pipeline, throughput_workload  # noqa: E402


def run_ray_data_llm(model: dict, prompts: list[str], sampling: dict) -> tuple[float, int]:
    from generation.models import resolve_model

    path = resolve_model(model["source"], model.get("cache_dir"))
    started = time.perf_counter()
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    light = {"enabled": True, "num_cpus": 0.1}
    config = vLLMEngineProcessorConfig(
        model_source=path,
        engine_kwargs={**model["engine_args"], "seed": 0},
        runtime_env={"env_vars": {k: str(v) for k, v in model["env"].items()}},
        batch_size=64,
        concurrency=1,
        chat_template_stage=light,
        tokenize_stage=light,
        detokenize_stage=light,
        log_engine_metrics=False,
    )
    processor = build_processor(
        config,
        preprocess=lambda row: {"messages": [{"role": "user", "content": row["prompt"]}], "sampling_params": sampling},
        postprocess=lambda row: {"tokens": len(row["generated_tokens"])},
        preprocess_map_kwargs={"num_cpus": 0.1},
        postprocess_map_kwargs={"num_cpus": 0.1},
    )
    rows = processor(ray.data.from_items([{"prompt": p} for p in prompts])).take_all()
    wall = time.perf_counter() - started
    ray.shutdown()
    return wall, sum(r["tokens"] for r in rows)


def main() -> None:
    model, prompts, sampling, args = throughput_workload(__doc__.splitlines()[0])
    theirs = report("ray.data.llm", *run_ray_data_llm(model, prompts, sampling))
    with tempfile.TemporaryDirectory() as tmp:
        wall, tokens, _, _ = run_pipeline(prompts, args.max_tokens, args.temperature, Path(tmp))
        ours = report("synthray pipeline", wall, tokens)
    print(f"ratio {ours / theirs:.3f}")


if __name__ == "__main__":
    main()
