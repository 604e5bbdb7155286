"""Re-filtering a finished run into a derived run (rayjobs/refilter.py): what strict drops, ids kept, every seed
accounted for, no engine started, the source untouched and refused while unfinished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayjobs import refilter
from rayjobs.pipeline import run
from tests.conftest import make_config
from tests.invariant import assert_invariant


def refilter_config(*overrides: str) -> dict:
    return make_config(["cluster.progress_bars=false", *overrides], config_name="refilter")


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source_run(ray_session, tmp_path_factory):
    from tests.conftest import write_jsonl

    root = tmp_path_factory.mktemp("source")
    long = "The harbor master counts the boats that leave at dawn and writes each name in the ledger"
    texts = [f"Say hi {i}." for i in range(4)]  # the default length rule keeps 3 words; strict wants 4
    texts += [f"{long} number {i}." for i in range(4)]  # near-duplicates: strict's MinHash step keeps the first
    texts += [f"Distinct sentence {w} about gardens, rivers and the light of a {w} morning." for w in "abcd"]
    seeds = write_jsonl(root / "seeds.jsonl", [{"id": f"s{i:02d}", "instruction": t} for i, t in enumerate(texts)])
    config = make_config(
        [
            "model=dry_run", "model.echo=true", f"sink.uri={root / 'run'}", "cluster.progress_bars=false",
            "run.name=src", "recipe=template", "source=jsonl", f"source.uri={seeds}", "model.batch_size=3",
        ]
    )  # fmt: skip
    return run(config)


def test_refilter_strict_drops_what_strict_drops_and_keeps_ids_and_seeds(source_run, tmp_path):
    before = files(Path(source_run.sink.uri))
    result = refilter.run(
        refilter_config(f"src.uri={source_run.sink.uri}", f"sink.uri={tmp_path / 'strict'}", "filters=strict")
    )
    assert files(Path(source_run.sink.uri)) == before  # the source run is never rewritten
    source_ids = set()
    for kind in ("data", "rejected", "errors"):
        table = source_run.sink.read_kind(kind)
        source_ids |= set(table["id"].to_pylist()) if table is not None else set()
    seeds = {
        s
        for kind in ("data", "rejected", "errors")
        if (t := source_run.sink.read_kind(kind)) is not None
        for s in t["seed_id"].to_pylist()
    }
    counts = assert_invariant(result.sink, seeds)
    derived_ids = set()
    for kind in ("data", "rejected", "errors"):
        table = result.sink.read_kind(kind)
        derived_ids |= set(table["id"].to_pylist()) if table is not None else set()
    assert derived_ids == source_ids
    record = json.loads(result.sink.read_text("run.json"))
    assert record["source_run"]["uri"] == source_run.sink.uri and record["postpass"] == "refilter"
    assert [f["step"] for f in record["summary"]["filters"]] == list(refilter_config("filters=strict")["filters"])
    assert counts["data"] < source_run.summary["kept"]  # strict's near-dup and length rules find more to drop
    assert sum(f["dropped"] for f in record["summary"]["filters"]) > 0
    assert "engine_ready_s" not in record["summary"]
    # The same strict steps over the same rows in the source's commit order, in this process: the same verdicts.
    assert set(result.sink.read_kind("data")["id"].to_pylist()) == strict_kept_in_order(source_run)


def strict_kept_in_order(source_run) -> set[str]:
    from filtering.stage import build_filters, start_filter_state
    from rayjobs.commit import load_commits

    steps = refilter_config("filters=strict")["filters"]
    text_fields = json.loads(source_run.sink.read_text("run.json"))["run"]["text_fields"]
    filters = build_filters(steps, text_fields, start_filter_state(steps))
    source_steps = set(json.loads(source_run.sink.read_text("run.json"))["config"]["filters"])
    kept = set()
    for commit in load_commits(source_run.sink):
        for shard in commit.shards:
            rows = source_run.sink.read_table(shard["path"]).to_pylist()
            if shard["kind"] == "rejected":
                rows = [r for r in rows if r["rejected_by"] in source_steps]
            elif shard["kind"] != "data":
                continue
            for _, filt in filters:
                rows = [r for r, (keep, _) in zip(rows, filt.keep_batch(rows), strict=True) if keep]
            kept |= {r["id"] for r in rows}
    return kept


def test_a_source_without_success_or_the_source_itself_as_sink_is_refused(source_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(ValueError, match=r"holds no finished run \(_SUCCESS is missing\): finish it first"):
        refilter.run(refilter_config(f"src.uri={unfinished}", f"sink.uri={tmp_path / 'out'}"))
    with pytest.raises(ValueError, match="is the source run itself"):
        refilter.run(refilter_config(f"src.uri={source_run.sink.uri}", f"sink.uri={source_run.sink.uri}"))
    with pytest.raises(ValueError, match=r"block_rows must be a whole number of rows of at least 1, got 0"):
        refilter.run(refilter_config(f"src.uri={source_run.sink.uri}", f"sink.uri={tmp_path / 'out'}", "block_rows=0"))
    with pytest.raises(ValueError, match="src.uri is required"):
        refilter.run(refilter_config(f"sink.uri={tmp_path / 'out'}"))
    assert not (tmp_path / "out").exists()


def test_the_source_runs_identity_is_part_of_the_derived_runs_fingerprint():
    from rayjobs.commit import fingerprint

    base = {"filters": {"length": {}}, "src": {"uri": "outputs/a", "fingerprint": {"recipe.name": "x"}}}
    moved = {**base, "src": {**base["src"], "uri": "outputs/b"}}
    regenerated = {**base, "src": {**base["src"], "fingerprint": {"recipe.name": "y"}}}
    refiltered = {**base, "filters": {"length": {"min_chars": 50}}}
    prints = [fingerprint(c) for c in (base, moved, regenerated, refiltered)]
    assert all(p != prints[0] for p in prints[1:]) and prints[0]["src.uri"] == "outputs/a"


def test_a_source_whose_filters_rewrote_text_is_noted(ray_session, tmp_path, caplog):
    pii_run = run(
        make_config(["model=dry_run", f"sink.uri={tmp_path / 'pii'}", "cluster.progress_bars=false", "+filters.pii={}"])
    )
    out = tmp_path / "again"
    result = refilter.run(refilter_config(f"src.uri={pii_run.sink.uri}", f"sink.uri={out}", "filters=none"))
    record = json.loads(result.sink.read_text("run.json"))
    assert any("['pii'] rewrote text" in note for note in record["notes"]) and "rewrote text" in caplog.text
    dropped_by_filters = sum(n for step, n in pii_run.summary["rejected_by"].items() if step != "self_instruct")
    assert record["summary"]["kept"] == pii_run.summary["kept"] + dropped_by_filters  # filters=none keeps them all
    assert "Source run and this refilter" in result.sink.read_text("report.html")
