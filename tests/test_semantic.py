"""Semantic dedup, novelty by embedding and the semantic diversity figures, on the real built-in encoder
(all-MiniLM-L6-v2 from its wheel) and a real faiss index in a Ray actor."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest

from filtering.exact_dedup import ExactDedupFilter
from filtering.near_dedup import NearDedupFilter
from filtering.semantic_dedup import SemanticDedupFilter
from generation.embeddings import Encoder, embedding_column, resolve_encoder
from rayjobs import report
from rayjobs.pipeline import run
from rayjobs.semantic import diversity
from rayjobs.sink import Sink
from tests.conftest import write_jsonl
from tests.invariant import assert_invariant

PAIRS = json.loads((Path(__file__).parent / "data" / "paraphrases.json").read_text())
COLUMN = embedding_column(["text"])


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


def rows(texts: list[str], encoder: Encoder, prefix: str) -> list[dict]:
    vectors = encoder.encode(texts)
    return [
        {"id": f"{prefix}{i}", "text": t, COLUMN: v.tolist()}
        for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
    ]


def semantic_filter(threshold: float) -> SemanticDedupFilter:
    filt = SemanticDedupFilter(threshold=threshold, fields=["text"], shards=SemanticDedupFilter.start_state(threshold))
    filt.bind_fields(["text"])
    return filt


def dropped_after_firsts(filt, pairs: list[list[str]], encoder: Encoder) -> list[tuple[int, str]]:
    """Keep every pair's first text, then offer each second text: (pair, reason) of those dropped."""
    firsts = rows([p[0] for p in pairs], encoder, "a")
    assert all(keep for keep, _ in filt.keep_batch(firsts))
    seconds = rows([p[1] for p in pairs], encoder, "b")
    return [(i, why) for i, (keep, why) in enumerate(filt.keep_batch(seconds)) if not keep]


def test_paraphrases_are_caught_where_exact_and_near_dedup_see_nothing(ray_session, encoder):
    paraphrases, different = PAIRS["paraphrases"], PAIRS["different"]
    # Lexical dedup keeps every paraphrase: no normalised copy, no shared MinHash band.
    for lexical in (
        ExactDedupFilter(["text"], shards=ExactDedupFilter.start_state(2)),
        NearDedupFilter(["text"], shards=NearDedupFilter.start_state(2)),
    ):
        offered = [{"id": str(i), "text": t} for pair in paraphrases for i, t in enumerate(pair[:2])]
        assert all(keep for keep, _ in lexical.keep_batch(offered))
    # At the default 0.95: 17 of 24 paraphrases (recall 0.71), none of the 16 same-topic texts saying something else.
    caught = dropped_after_firsts(semantic_filter(0.95), paraphrases, encoder)
    assert len(caught) >= 17
    assert all(why.endswith(f" to a{i}") and why.startswith("cosine 0.9") for i, why in caught)
    assert dropped_after_firsts(semantic_filter(0.95), different, encoder) == []
    # At 0.85 every paraphrase is caught and still no different text (their highest cosine is 0.79).
    assert len(dropped_after_firsts(semantic_filter(0.85), paraphrases, encoder)) == len(paraphrases)
    assert dropped_after_firsts(semantic_filter(0.85), different, encoder) == []


def test_a_repeat_within_one_batch_is_caught_and_names_the_earlier_row(ray_session, encoder):
    filt = semantic_filter(0.9)
    batch = rows(["Why do cats purr?", "Name three rivers in Africa.", "What is the reason cats purr?"], encoder, "r")
    verdicts = filt.keep_batch(batch)
    assert [keep for keep, _ in verdicts] == [True, True, False]
    assert verdicts[2][1].endswith(" to r0")


def test_diversity_figures_follow_the_texts(encoder):
    same = encoder.encode(["Tell me a joke about computers."] * 3 + ["Tell me a computer joke."] * 3)
    spread = encoder.encode([p[0] for p in PAIRS["different"][:6]])
    narrow, wide = diversity(same, 0.5), diversity(spread, 0.5)
    assert narrow["clusters"] == 1 and narrow["vendi_score"] < 1.5 and narrow["mean_cosine_distance"] < 0.1
    assert wide["clusters"] == 6 and wide["vendi_score"] > 4 and wide["mean_cosine_distance"] > 0.4
    assert wide["cluster_entropy_normalized"] == pytest.approx(1.0)


def _config(dry_config, seeds: Path, *extra: str) -> dict:
    return dry_config(
        "recipe=template",
        "source=jsonl",
        f"source.uri={seeds}",
        "model.echo=true",
        "model.batch_size=1",
        "filters=none",
        "+filters.semantic_dedup.threshold=0.9",
        "+filters.semantic_dedup.fields=[response]",
        "+filters.semantic_dedup.snapshot_rows=2",
        *extra,
    )


def test_a_resumed_run_restores_the_index_and_catches_a_paraphrase_of_a_committed_row(
    ray_session, dry_config, tmp_path
):
    first = {f"p{i}": pair[0] for i, pair in enumerate(PAIRS["paraphrases"][:5])}
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"id": k, "instruction": v} for k, v in first.items()])
    config = _config(dry_config, seeds, "embedding.figures=true")
    run(config)
    sink = Sink(config["sink"]["uri"])
    record = json.loads(sink.read_text("run.json"))
    semantic = record["quality"]["semantic"]
    assert semantic["n"] == 5 and semantic["model"] == "builtin:minilm" and len(semantic["map"]["points"]) == 5
    assert "Semantic diversity" in sink.read_text("report.html")
    assert "Semantic diversity (builtin:minilm, 5 rows)" in sink.read_text("README.md")
    # A crash after the commits: two segments of two vectors were written; the fifth row's vector was not.
    sink.remove("_SUCCESS")
    sink.remove("run.json")
    segments = [p for p in sink.list("_synthray/artifacts") if p.endswith("vectors.npy")]
    assert len(segments) == 2
    rest = {"again-0": PAIRS["paraphrases"][0][1], "again-4": PAIRS["paraphrases"][4][1], "new": "Name a red fruit."}
    write_jsonl(seeds, [{"id": k, "instruction": v} for k, v in {**first, **rest}.items()])
    loads = mock.patch("generation.embeddings.resolve_encoder", wraps=resolve_encoder)
    with loads as resolved:
        result = run(config)
    # The driver embedded the row after the last segment and the figures' sample with one encoder, loaded once.
    assert resolved.call_count == 1
    assert result.summary["resumed_seeds"] == 5
    rejected = {r["seed_id"]: r["reject_reason"] for r in sink.read_kind("rejected").to_pylist()}
    kept_ids = {r["seed_id"]: r["id"] for r in sink.read_kind("data").to_pylist()}
    assert set(rejected) == {"again-0", "again-4"}  # p0 restored from a segment, p4 embedded again
    assert rejected["again-0"].endswith(kept_ids["p0"]) and rejected["again-4"].endswith(kept_ids["p4"])
    assert_invariant(sink, [*first, *rest])
    duplicates = json.loads(sink.read_text("run.json"))["quality"]["semantic"]["duplicates"]
    assert duplicates["dropped"] == {"semantic_dedup": 2}
    assert {d["kept_text"] for d in duplicates["examples"]} >= {first["p0"]}
    # Rebuilding the report reads the figures from run.json: no encoder is built.
    sink.remove("report.html")
    with mock.patch.object(Encoder, "encode", side_effect=AssertionError("the rebuild embedded text")):
        report.main([sink.uri])
    assert "Semantic duplicates" in sink.read_text("report.html")


def test_kept_embeddings_are_a_float32_column_and_absent_by_default(ray_session, dry_config, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"id": "a", "instruction": "Name a red fruit."}])
    plain = _config(dry_config, seeds)
    run(plain)
    data = Sink(plain["sink"]["uri"]).read_kind("data")
    assert not [c for c in data.column_names if "embedding" in c]
    kept = _config(dry_config, seeds, "embedding.keep=true", "sink.uri=" + str(tmp_path / "kept"))
    run(kept)
    data = Sink(kept["sink"]["uri"]).read_kind("data")
    assert data.schema.field("embedding").type.value_type == pa.float32()
    vector = np.asarray(data["embedding"][0].as_py())
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    assert [c for c in data.column_names if "embedding" in c] == ["embedding"]


def test_novelty_by_embedding_drops_a_paraphrase_of_its_pool(ray_session, dry_config, tmp_path):
    pair = PAIRS["paraphrases"][1]
    seeds = write_jsonl(
        tmp_path / "seeds.jsonl",
        [{"id": "para", "instruction": pair[1]}, {"id": "x", "instruction": "Name a red fruit."}],
    )
    config = dry_config(
        "recipe=template",
        "source=jsonl",
        f"source.uri={seeds}",
        "model.echo=true",
        "filters=none",
        "+filters.novelty.field=response",
        "+filters.novelty.measure=embedding",
        "+filters.novelty.threshold=0.9",
        f"+filters.novelty.pool=[{json.dumps(pair[0])}]",
    )
    run(config)
    rejected = Sink(config["sink"]["uri"]).read_kind("rejected").to_pylist()
    assert [(r["seed_id"], r["rejected_by"]) for r in rejected] == [("para", "novelty")]
    assert rejected[0]["reject_reason"].endswith(" to pool:0")
