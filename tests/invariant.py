"""The output invariant of DESIGN.md, checked from the files alone (local or s3)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from rayjobs.commit import load_commits
from rayjobs.rows import KINDS
from rayjobs.sink import Sink


def assert_invariant(sink: Sink, seed_ids: Iterable[str]) -> dict[str, int]:
    """After ``_SUCCESS``: every seed in some row, no id twice, data dirs hold exactly the committed shards.

    Returns the row count per kind.
    """
    assert sink.exists("_SUCCESS"), f"{sink.uri} has no _SUCCESS"
    named = {shard["path"] for commit in load_commits(sink) for shard in commit.shards}
    present = {path for kind in KINDS.values() for path in sink.list(kind, suffix=".parquet")}
    assert present == named, f"uncommitted {sorted(present - named)}, missing {sorted(named - present)}"
    ids, seeds, counts = [], set(), {}
    for kind in KINDS.values():
        table = sink.read_kind(kind)
        counts[kind] = 0 if table is None else table.num_rows
        if table is not None:
            ids += table["id"].to_pylist()
            seeds.update(table["seed_id"].to_pylist())
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} ids appear twice"
    missing = set(seed_ids) - seeds
    assert not missing, f"{len(missing)} seeds have no row, e.g. {sorted(missing)[:3]}"
    summary = json.loads(sink.read_text("run.json"))["summary"]
    assert summary["kept"] == counts["data"] and summary["errors"] == counts["errors"], summary
    return counts
