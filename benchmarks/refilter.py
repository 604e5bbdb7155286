"""Re-filtering a finished run: rows/s of ``rayjobs.refilter`` against the same filters run in-process on the same rows.

A dry-run source run (template recipe, one row per seed, no filters) is generated once into a temporary directory;
the default filters then re-filter it as a derived run (Ray, one filter actor, Parquet reads and writes, commits,
run.json, report and card: the whole post-pass), and the baseline applies the same filter steps to the same rows in
this process, batch by batch, as a filter benchmark does. Both figures count rows entering the filters.

    .venv/bin/python benchmarks/refilter.py [--rows 1000000]

Last line: ``ratio <refilter rows/s / in-process filter rows/s>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.engine_overhead import compose_config  # noqa: E402
from benchmarks.scale import write_seeds  # noqa: E402


def refilter_config(overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="refilter", overrides=overrides), resolve=True)


def in_process(sink, steps: dict, text_fields: list[str]) -> tuple[int, float]:
    """The filter steps over every kept row of the source, 4,096 rows a batch, state actors started as in a run."""
    from filtering.stage import build_filters, start_filter_state

    filters = build_filters(steps, text_fields, start_filter_state(steps))
    rows_seen, started = 0, time.perf_counter()
    for path in sink.list("data", suffix=".parquet"):
        rows = sink.read_table(path).to_pylist()
        for start in range(0, len(rows), 4096):
            pending = rows[start : start + 4096]
            rows_seen += len(pending)
            for _, filt in filters:
                pending = [r for r, (keep, _) in zip(pending, filt.keep_batch(pending), strict=True) if keep]
    return rows_seen, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    import ray

    from rayjobs import refilter
    from rayjobs.pipeline import run

    with tempfile.TemporaryDirectory() as tmp:
        source, seeds = f"{tmp}/source", Path(tmp) / "seeds.jsonl"
        write_seeds(seeds, args.rows)
        config = compose_config(
            [
                "model=dry_run", "recipe=template", "filters=none", "source=jsonl", f"source.uri={seeds}",
                f"sink.uri={source}", "model.batch_size=4096", "cluster.progress_bars=false",
            ]
        )  # fmt: skip
        started = time.perf_counter()
        made = run(config)
        print(f"source run: {made.summary['kept']:,} rows in {time.perf_counter() - started:.1f} s")
        steps = refilter_config([])["filters"]
        started = time.perf_counter()
        result = refilter.run(
            refilter_config([f"src.uri={source}", f"sink.uri={tmp}/refiltered", "cluster.progress_bars=false"])
        )
        wall = time.perf_counter() - started
        seen = result.summary["filters"][0]["seen"]
        print(f"refilter: {seen:,} rows through {list(steps)} in {wall:.1f} s = {seen / wall:,.0f} rows/s (whole pass)")
        text_fields = json.loads(result.sink.read_text("run.json"))["run"]["text_fields"]
        rows, seconds = in_process(made.sink, steps, text_fields)  # dedup state actors on the same Ray
        ray.shutdown()
        print(f"in-process filters: {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
        print(f"ratio {(seen / wall) / (rows / seconds):.3f}")


if __name__ == "__main__":
    main()
