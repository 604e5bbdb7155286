"""Seed sources: stable ids, limits, globs, broken lines kept for errors/, clear whole-file errors."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayjobs.sources import iter_seeds, plan_seeds, read_chunk
from tests.conftest import write_jsonl


def test_builtin_source_uses_task_ids_and_limit():
    seeds = list(iter_seeds({"kind": "builtin", "limit": 5}))
    assert [s for s, _, _ in seeds] == ["seed-001", "seed-002", "seed-003", "seed-004", "seed-005"]
    assert json.loads(seeds[0][1])["instruction"] and not any(error for _, _, error in seeds)


def test_jsonl_ids_from_column_or_file_and_line(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "k1", "instruction": "x"}, {"instruction": "y"}])
    seeds = [s for s, _, _ in iter_seeds({"kind": "jsonl", "uri": str(tmp_path / "a.jsonl")})]
    assert seeds == ["k1", "a.jsonl:2"]
    # Stable across reruns.
    assert [s for s, _, _ in iter_seeds({"kind": "jsonl", "uri": str(tmp_path / "a.jsonl")})] == seeds


def test_directory_and_glob_skip_bookkeeping_files(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"instruction": "b"}])
    write_jsonl(tmp_path / "a.jsonl", [{"instruction": "a"}])
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".a.jsonl.crc").write_text("junk")
    by_dir = [s for s, _, _ in iter_seeds({"kind": "jsonl", "uri": str(tmp_path)})]
    by_glob = [s for s, _, _ in iter_seeds({"kind": "jsonl", "uri": str(tmp_path / "*.jsonl")})]
    assert by_dir == by_glob == ["a.jsonl:1", "b.jsonl:1"]


def test_broken_json_line_travels_raw_with_the_reason_for_an_error_row(tmp_path):
    write_jsonl(tmp_path / "s.jsonl", [{"instruction": "ok"}, '{"instruction": "trunc', "[1, 2]", "7" * 5000])
    seeds = list(iter_seeds({"kind": "jsonl", "uri": str(tmp_path / "s.jsonl")}))
    assert seeds[0][2] == ""
    assert seeds[1][:2] == ("s.jsonl:2", '{"instruction": "trunc') and "line 2: not valid JSON" in seeds[1][2]
    assert seeds[2] == ("s.jsonl:3", "[1, 2]", "line 3: a JSON array, not an object with fields")
    assert "Exceeds the limit" in seeds[3][2]  # a 5000-digit number: Python's int conversion limit


def test_seeds_utf8_cannot_encode_and_deep_nesting_become_error_seeds_not_crashes(tmp_path):
    lines = [
        json.dumps({"id": "good", "instruction": "fine"}),
        '{"id": "surrogate", "instruction": "bad \\ud800 half an emoji"}',
        '{"id": "bad-id-\\udfff", "instruction": "fine text"}',
        "[" * 100_000 + "]" * 100_000,
    ]
    (tmp_path / "s.jsonl").write_text("\n".join(lines) + "\n")
    source = {"kind": "jsonl", "uri": str(tmp_path / "s.jsonl")}
    seeds = {seed_id: (seed, error) for seed_id, seed, error in iter_seeds(source)}
    assert list(seeds) == ["good", "surrogate", "s.jsonl:3", "s.jsonl:4"]  # the bad id falls back to file:line
    assert "UTF-8 cannot encode in field 'instruction'" in seeds["surrogate"][1]
    assert "seed id 'bad-id-\\udfff'" in seeds["s.jsonl:3"][1] and "the seed is s.jsonl:3" in seeds["s.jsonl:3"][1]
    assert "nested deeper" in seeds["s.jsonl:4"][1]
    for seed, _ in seeds.values():
        seed.encode("utf-8")  # every seed travels as valid UTF-8: Arrow takes it
    assert json.loads(seeds["surrogate"][0])["instruction"] == "bad \ud800 half an emoji"  # escaped, not lost
    assert _read_all(source, block_rows=4)[1]["error"] == seeds["surrogate"][1]  # a read task builds its block


def test_a_compressed_file_cut_short_or_mislabelled_names_the_file(tmp_path):
    whole = gzip.compress(b"".join(json.dumps({"instruction": f"task {i}"}).encode() + b"\n" for i in range(2000)))
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"cut.jsonl.gz: cannot be read past line \d+ \(EOFError"):
        plan_seeds({"kind": "jsonl", "uri": str(tmp_path / "cut.jsonl.gz")}, block_rows=8)
    (tmp_path / "plain.jsonl.gz").write_text('{"instruction": "not gzip"}\n')
    with pytest.raises(ValueError, match=r"plain.jsonl.gz: cannot be read past line 0 \(BadGzipFile"):
        plan_seeds({"kind": "jsonl", "uri": str(tmp_path / "plain.jsonl.gz")}, block_rows=8)


def test_parquet_source_and_column_mapping(tmp_path):
    pq.write_table(pa.table({"prompt": ["p1", "p2"], "n": [1, 2]}), tmp_path / "s.parquet")
    seeds = list(
        iter_seeds({"kind": "parquet", "uri": str(tmp_path / "s.parquet"), "columns": {"prompt": "instruction"}})
    )
    assert [json.loads(s)["instruction"] for _, s, _ in seeds] == ["p1", "p2"]


def test_whole_file_problems_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_seeds({"kind": "jsonl", "uri": str(tmp_path / "missing.jsonl")}))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="bad.parquet: not a readable Parquet file"):
        list(iter_seeds({"kind": "parquet", "uri": str(tmp_path / "bad.parquet")}))
    (tmp_path / "latin.jsonl").write_bytes(b'{"instruction": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="latin.jsonl: line 1 is not UTF-8"):
        list(iter_seeds({"kind": "jsonl", "uri": str(tmp_path / "latin.jsonl")}))
    with pytest.raises(ValueError, match="unknown source.kind 'csv'"):
        list(iter_seeds({"kind": "csv", "uri": "x"}))


def test_duplicate_seed_ids_are_refused(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "instruction": "a"}, {"id": 1, "instruction": "b"}])
    with pytest.raises(ValueError, match="seed id '1' appears more than once"):
        plan_seeds({"kind": "jsonl", "uri": str(tmp_path / "d.jsonl")}, block_rows=4)


def test_empty_and_truncated_files_stop_the_run_naming_the_file(tmp_path):
    (tmp_path / "jsonl").mkdir()
    write_jsonl(tmp_path / "jsonl" / "a.jsonl", [{"instruction": "a"}])
    (tmp_path / "jsonl" / "b.jsonl").write_text("\n  \n")
    with pytest.raises(ValueError, match=r"b.jsonl: the file holds no seeds \(empty\)"):
        list(iter_seeds({"kind": "jsonl", "uri": str(tmp_path / "jsonl")}))
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.table({"instruction": [f"task {i}" for i in range(1000)]}), whole)
    (tmp_path / "cut.parquet").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.parquet: not a readable Parquet file"):
        list(iter_seeds({"kind": "parquet", "uri": str(tmp_path / "cut.parquet")}))
    pq.write_table(pa.table({"instruction": pa.array([], pa.string())}), tmp_path / "none.parquet")
    with pytest.raises(ValueError, match="none.parquet: the file holds no seeds"):
        list(iter_seeds({"kind": "parquet", "uri": str(tmp_path / "none.parquet")}))


def test_files_with_different_columns_flow_through_one_schema(tmp_path):
    (tmp_path / "mixed").mkdir()
    write_jsonl(tmp_path / "mixed" / "a.jsonl", [{"id": "a1", "instruction": "a"}])
    write_jsonl(tmp_path / "mixed" / "b.jsonl", [{"id": "b1", "instruction": "b", "input": "x", "meta": {"k": [1]}}])
    rows = _read_all({"kind": "jsonl", "uri": str(tmp_path / "mixed")}, block_rows=8)
    assert [r["seed_id"] for r in rows] == ["a1", "b1"]
    assert json.loads(rows[1]["seed"])["meta"] == {"k": [1]}


def _read_all(source, block_rows, committed=frozenset()):
    plan = plan_seeds(source, block_rows, committed)
    return [row for chunk in plan.chunks for row in read_chunk(source, chunk).to_pylist()]


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz"])
def test_chunks_read_where_they_lie_give_the_same_seeds_as_one_pass(tmp_path, name):
    lines = [json.dumps({"instruction": f"task {i}"}) if i % 7 else "" for i in range(1, 60)]
    lines[10] = '{"broken'  # a broken line keeps its place and its raw text
    text = ("\n".join(lines) + "\n").encode()
    (tmp_path / name).write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    source = {"kind": "jsonl", "uri": str(tmp_path / name)}
    expected = [{"seed_id": i, "seed": s, "error": e} for i, s, e in iter_seeds(source)]
    plan = plan_seeds(source, block_rows=5)
    assert plan.seeds == len(expected) == 51 and [c.rows for c in plan.chunks] == [5] * 10 + [1]
    assert _read_all(source, block_rows=5) == expected
    assert expected[9]["seed_id"] == f"{name}:11" and expected[9]["seed"] == '{"broken' and expected[9]["error"]


def test_parquet_chunks_read_only_their_row_groups_and_limit_cuts(tmp_path):
    table = pa.table({"id": [f"p{i}" for i in range(100)], "instruction": [f"t{i}" for i in range(100)]})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=7)
    write_jsonl(tmp_path / "b.jsonl", [{"instruction": "x"}])  # not parquet: not part of the source
    pq.write_table(table.slice(0, 3).set_column(0, "id", pa.array(["q0", "q1", "q2"])), tmp_path / "c.parquet")
    source = {"kind": "parquet", "uri": str(tmp_path), "limit": 102}
    rows = _read_all(source, block_rows=16)
    assert [r["seed_id"] for r in rows] == [f"p{i}" for i in range(100)] + ["q0", "q1"]
    assert [c.rows for c in plan_seeds(source, block_rows=16).chunks] == [16] * 6 + [4, 2]  # chunks end with files


def test_committed_seeds_are_skipped_and_whole_committed_chunks_dropped(tmp_path):
    write_jsonl(tmp_path / "s.jsonl", [{"id": f"k{i}", "instruction": "x"} for i in range(10)])
    source = {"kind": "jsonl", "uri": str(tmp_path / "s.jsonl")}
    committed = {"k0", "k1", "k2", "k3", "k5"}
    plan = plan_seeds(source, block_rows=4, committed=committed)
    assert (plan.seeds, plan.committed, len(plan.chunks)) == (10, 5, 2)
    assert [r["seed_id"] for r in _read_all(source, 4, committed)] == ["k4", "k6", "k7", "k8", "k9"]
    builtin = [r["seed_id"] for r in _read_all({"kind": "builtin", "limit": 5}, 2, {"seed-002"})]
    assert builtin == ["seed-001", "seed-003", "seed-004", "seed-005"]


def test_the_corpus_sample_is_uniform_seeded_limited_and_skips_unusable_seeds(tmp_path):
    rows = [{"id": f"k{i}", "prompt": f"task {i}"} for i in range(200)]
    write_jsonl(tmp_path / "s.jsonl", [*rows[:100], '{"broken', *rows[100:]])
    source = {"kind": "jsonl", "uri": str(tmp_path / "s.jsonl"), "columns": {"prompt": "instruction"}}
    plan = plan_seeds(source, block_rows=16, sample_size=20, sample_seed=7)
    assert len(plan.sample) == 20 and plan.seeds == 201
    assert plan.sample == plan_seeds(source, block_rows=4, sample_size=20, sample_seed=7).sample  # seeded
    assert plan.sample != plan_seeds(source, block_rows=16, sample_size=20, sample_seed=8).sample
    ids = [seed_id for seed_id, _ in plan.sample]
    assert len(set(ids)) == 20 and "s.jsonl:101" not in ids  # the broken line is never drawn
    assert all(json.loads(seed)["instruction"].startswith("task") for _, seed in plan.sample)  # columns applied
    assert max(int(i[1:]) for i in ids) > 100  # drawn from the whole file, not its head
    limited = plan_seeds({**source, "limit": 30}, block_rows=16, sample_size=20, sample_seed=7)
    assert all(int(seed_id[1:]) < 30 for seed_id, _ in limited.sample)  # only seeds source.limit admits
    assert len(plan_seeds(source, block_rows=16, sample_size=500).sample) == 200  # all of a smaller source
    assert plan_seeds(source, block_rows=16).sample == []  # nothing drawn unless asked


def test_reservoir_draws_every_item_equally_often():
    import random
    from collections import Counter

    from rayjobs.sources import Reservoir

    counts: Counter = Counter()
    for trial in range(3000):
        reservoir = Reservoir(5, random.Random(trial))
        for item in range(50):
            reservoir.offer(item)
        counts.update(reservoir.drawn())
    assert set(counts) == set(range(50))
    assert max(counts.values()) < 1.25 * 300 and min(counts.values()) > 0.75 * 300  # 3000 × 5 / 50 each
