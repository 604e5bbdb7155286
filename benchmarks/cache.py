"""The completion cache: a second identical SmolLM2 run with the cache vs without, and lookups on a large cache.

    .venv/bin/python benchmarks/cache.py [--seeds 24] [--entries 1000000] [--skip-engine]

1. Three runs of the default recipe (self_instruct, machine_examples=0) on SmolLM2 in one local Ray: a first run that
   fills a fresh cache, the same config under another run name with the cache (every call replayed), and again with
   the cache off. Printed: wall time and engine calls of each, tokens saved, and ``ratio`` (wall with the cache /
   without) for the second run.
2. ``--entries`` dry-run-shaped entries written as packs, then a fresh store (another actor) looks every key up:
   index load, pack reads and dictionary hits in ``hits/s``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def lookups(entries: int) -> None:
    from rayjobs.cache import PackStore

    with tempfile.TemporaryDirectory() as root:
        store = PackStore(root)
        started = time.perf_counter()
        for i in range(entries):
            store.put(
                f"{i:064x}-0", {"texts": [f"answer {i} about the river"], "prompt_tokens": 40, "completion_tokens": 9}
            )
        store.flush()
        written = time.perf_counter() - started
        keys = [f"{i:064x}-0" for i in range(entries)]
        random.Random(0).shuffle(keys)
        fresh = PackStore(root)
        started = time.perf_counter()
        hits = sum(fresh.get(key) is not None for key in keys)
        seconds = time.perf_counter() - started
    print(
        f"{entries:,} entries written in {written:.1f} s; looked up in random order: {hits:,} hits in {seconds:.1f} s "
        f"→ {hits / seconds:,.0f} hits/s (index load and pack reads included)"
    )


def runs(seeds: int) -> None:
    import ray

    from rayjobs.pipeline import run
    from tests.conftest import make_config

    with tempfile.TemporaryDirectory() as root:
        base = [
            f"cache.uri={root}/cache",
            "recipe.machine_examples=0",
            f"source.limit={seeds}",
            "cluster.progress_bars=false",
        ]
        figures = {}
        ray.init(include_dashboard=False, log_to_driver=False)
        for name, extra in (
            ("fill", ["cache.mode=use"]),
            ("cached", ["cache.mode=use"]),
            ("uncached", ["cache.mode=off"]),
        ):
            config = make_config([*base, *extra, f"run.name={name}", f"sink.uri={root}/{name}"])
            started = time.perf_counter()
            summary = run(config).summary
            figures[name] = (time.perf_counter() - started, summary)
            cache = summary.get("cache") or {}
            asked = cache.get("misses", summary["roles"]["generator"]["calls"])
            print(
                f"{name:9s}: {figures[name][0]:6.1f} s, engine calls {asked}, "
                f"replayed {cache.get('hits', 0)}, tokens saved {cache.get('tokens_saved', 0):,}",
                flush=True,
            )
        ray.shutdown()
    print(
        f"ratio {figures['cached'][0] / figures['uncached'][0]:.3f} (wall of the second run with the cache / without)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--skip-engine", action="store_true", help="only the lookup figure")
    args = parser.parse_args()
    lookups(args.entries)
    if not args.skip_engine:
        runs(args.seeds)


if __name__ == "__main__":
    main()
