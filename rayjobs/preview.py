"""``run.preview=N``: N seeds drawn evenly from the source run into ``<sink.uri>-preview``, then a forecast for the
whole source: seeds, samples, kept rate, tokens, wall time at the measured throughput, cost per role.

The preview is an ordinary run (commits, report, resume) over a JSONL of the drawn seeds, each keeping its own seed
id, so the full run afterwards asks the engines the same requests for those seeds and finds them in the completion
cache. The forecast scales the preview's own counters by (source seeds / preview seeds); wall time divides the
forecast completion tokens by the preview's completion tokens per second per engine replica, plus its engine start.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rayjobs.commit import SUCCESS
from rayjobs.pipeline import RunResult, run, source_section, storage_options
from rayjobs.sink import Sink
from rayjobs.sources import iter_seeds

log = logging.getLogger("synthray")

PREVIEW_SEEDS, FORECAST = "_preview/seeds.jsonl", "forecast.json"


def drawn(source: dict[str, Any], count: int) -> tuple[list[str], int]:
    """``count`` seed rows spread evenly over the source (each with its seed id as ``id``), and the source's size."""
    total = sum(1 for _ in iter_seeds(source))
    if total == 0:
        raise ValueError(f"the source yielded no seeds (uri={source.get('uri')})")
    wanted = {i * total // min(count, total) for i in range(min(count, total))}
    rows = []
    for index, (seed_id, seed, error) in enumerate(iter_seeds(source)):
        if index in wanted:  # an unusable seed goes as it is, to be an error row of the preview as of the run
            rows.append(seed if error else json.dumps({**json.loads(seed), "id": seed_id}, ensure_ascii=False))
    return rows, total


def forecast(summary: dict[str, Any], preview_seeds: int, total: int, replicas: int) -> dict[str, Any]:
    """The whole source's figures from the preview's, scaled by total / preview seeds."""
    scale = total / preview_seeds
    generated, kept = summary["generated"], summary["kept"]
    completion = summary["completion_tokens"] * scale
    started = summary.get("engine_ready_s") or 0.0
    generating = max(1e-9, summary["wall_s"] - started)
    per_replica = summary["completion_tokens"] / generating / max(1, replicas)
    roles = {
        role: {
            "prompt_tokens": round(f["prompt_tokens"] * scale),
            "completion_tokens": round(f["completion_tokens"] * scale),
            **({"cost_usd": round(f["cost_usd"] * scale, 4)} if "cost_usd" in f else {}),
        }
        for role, f in (summary.get("roles") or {}).items()
    }
    return {
        "seeds": total,
        "preview_seeds": preview_seeds,
        "samples": round(generated * scale),
        "kept": round(kept * scale),
        "kept_rate": round(kept / generated, 4) if generated else None,
        "prompt_tokens": round(summary["prompt_tokens"] * scale),
        "completion_tokens": round(completion),
        "completion_tokens_per_s_per_replica": round(per_replica, 2),
        "wall_s_one_replica": round(started + completion / per_replica, 1) if per_replica else None,
        "wall_s": round(started + completion / (per_replica * replicas), 1) if per_replica else None,
        "replicas": replicas,
        "roles": roles,
        "cost_usd": round(sum(r.get("cost_usd", 0.0) for r in roles.values()), 4) if roles else None,
    }


def format_forecast(figures: dict[str, Any]) -> str:
    lines = [
        f"forecast for {figures['seeds']:,} seeds (from a preview of {figures['preview_seeds']:,}):",
        f"  samples {figures['samples']:,}, kept {figures['kept']:,} ({(figures['kept_rate'] or 0):.1%})",
        f"  tokens: prompt {figures['prompt_tokens']:,}, completion {figures['completion_tokens']:,}",
    ]
    if figures["wall_s"] is not None:
        lines.append(
            f"  wall ≈ {figures['wall_s']:,.0f} s with {figures['replicas']} replica(s) "
            f"({figures['wall_s_one_replica']:,.0f} s with one; {figures['completion_tokens_per_s_per_replica']:,.1f} "
            "completion tok/s per replica measured)"
        )
    for role, f in figures["roles"].items():
        cost = f" ${f['cost_usd']:,.4f}" if "cost_usd" in f else ""
        lines.append(f"  {role}: prompt {f['prompt_tokens']:,}, completion {f['completion_tokens']:,}{cost}")
    return "\n".join(lines)


def run_preview(config: dict[str, Any], started: float | None = None) -> RunResult:
    """The preview run at ``<sink.uri>-preview`` and its forecast (printed, and kept as forecast.json there)."""
    count = int(config["run"]["preview"])
    if count < 1:
        raise ValueError(f"run.preview must be a number of seeds of at least 1, got {count}")
    sink_section = {**config["sink"], "uri": str(config["sink"]["uri"]).rstrip("/") + "-preview"}
    sink = Sink(sink_section["uri"], storage_options(sink_section))
    if sink.exists(SUCCESS) and not config["run"].get("overwrite"):  # a finished preview: its forecast again
        record = json.loads(sink.read_text("run.json"))
        figures = json.loads(sink.read_text(FORECAST))
        print(f"the preview at {sink.uri} is finished (run.overwrite=true runs it again)\n{format_forecast(figures)}")
        return RunResult(sink, record["summary"])
    rows, total = drawn(source_section(config), count)
    sink.write_bytes(PREVIEW_SEEDS, ("\n".join(rows) + "\n").encode("utf-8"))
    seeds_uri = f"{sink.uri}/{PREVIEW_SEEDS}"
    source = {**config["source"], "kind": "jsonl", "uri": seeds_uri, "limit": None, "columns": {}}
    run_section = {**config["run"], "preview": 0, "corpus_source": source_section(config)}
    preview = {**config, "sink": sink_section, "source": source, "run": run_section}
    result = run(preview, started)
    figures = forecast(result.summary, len(rows), total, int(config["model"].get("replicas", 1)))
    sink.write_text(FORECAST, json.dumps(figures, indent=2))
    print(format_forecast(figures))
    return result
