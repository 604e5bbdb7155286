"""Resume after a crash, in process on the dry-run engine: committed seeds skipped, orphans removed, filter state and
run-wide artifacts carried over. (tests/test_faults.py kills real processes.)"""

from __future__ import annotations

import json
import random

from generation.seeds import builtin_seeds
from rayjobs.commit import ARTIFACTS, COMMITS, load_commits
from rayjobs.pipeline import run
from rayjobs.sink import Sink
from tests.conftest import write_jsonl
from tests.invariant import assert_invariant


def _crash(sink: Sink) -> None:
    """What a driver killed just before finishing leaves: committed shards and records, no _SUCCESS, no run.json."""
    sink.remove("_SUCCESS")
    sink.remove("run.json")


def test_resume_skips_committed_seeds_and_dedups_against_them(ray_session, dry_config, tmp_path):
    rng = random.Random(5)
    base = " ".join(f"word{rng.randrange(3000)}" for _ in range(80))
    near = base.split()
    near[40] = "changed"
    paraphrase = [w if i % 5 else "other" for i, w in enumerate(base.split())]  # ROUGE-L 0.8, no 5-gram shared
    first = {"base": base, "clean-1": "A short clean instruction about rivers and their deltas in spring."}
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"id": k, "instruction": v} for k, v in first.items()])
    config = dry_config(
        "recipe=template",
        "source=jsonl",
        f"source.uri={seeds}",
        "model.echo=true",
        "model.batch_size=1",
        "filters=none",
        "+filters.exact_dedup.num_shards=2",
        "+filters.near_dedup.num_shards=2",
        "+filters.novelty.field=response",
    )
    run(config)
    sink = Sink(config["sink"]["uri"])
    _crash(sink)
    orphan = sink.write_table("data", sink.read_kind("data").slice(0, 1))  # a writer died before its record
    # The rest of the source, as the crashed attempt had not reached it yet (same file, same config).
    rest = {
        "exact-copy": base.upper() + " !",
        "near-copy": " ".join(near),
        "paraphrase": " ".join(paraphrase),
        "clean-2": "Name three birds of prey.",
    }
    write_jsonl(seeds, [{"id": k, "instruction": v} for k, v in {**first, **rest}.items()])
    result = run(config)
    assert result.summary["attempt"] == 2 and result.summary["resumed_seeds"] == 2
    assert orphan not in sink.list("data")
    rejected = {r["seed_id"]: r["rejected_by"] for r in sink.read_kind("rejected").to_pylist()}
    assert rejected == {"exact-copy": "exact_dedup", "near-copy": "near_dedup", "paraphrase": "novelty"}
    counts = assert_invariant(sink, [*first, *rest])
    assert counts["data"] == 3 and result.summary["seeds_accounted"] == 6


def test_a_resumed_run_reuses_the_artifacts_of_the_first_attempt(ray_session, dry_config):
    config = dry_config("recipe=taxonomy", "source.limit=4", "model.batch_size=2")
    run(config)
    sink = Sink(config["sink"]["uri"])
    saved = json.loads(sink.read_text(f"{ARTIFACTS}/taxonomy.json"))
    _crash(sink)
    for record in sink.list(COMMITS)[1:]:  # the first batch was committed; the second was lost
        sink.remove(record)
    sink.write_text(f"{ARTIFACTS}/taxonomy.json", json.dumps({**saved, "planted": True}))
    result = run(config)
    assert result.summary["resumed_seeds"] == 2
    assert json.loads(sink.read_text("artifacts/taxonomy.json")).get("planted") is True  # reused, not recomputed
    assert_invariant(sink, [str(task["id"]) for task in builtin_seeds("texts")[:4]])


def test_a_seed_is_never_split_across_commits_even_with_big_blocks(ray_session, dry_config, tmp_path):
    import ray

    ray.data.DataContext.get_current().target_max_block_size = 1 << 20  # would split these 4 MB blocks
    rows = [{"id": f"big-{i}", "instruction": f"{i} " + "lighthouse keeper " * 20_000} for i in range(8)]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", rows)
    config = dry_config(
        "recipe=template",
        "recipe.n=3",
        "source=jsonl",
        f"source.uri={seeds}",
        "model.echo=true",
        "model.batch_size=8",
        "model.max_model_len=1000000",
        "filters=none",
    )
    result = run(config)
    sink = Sink(config["sink"]["uri"])
    covered = [seed for commit in load_commits(sink) for seed in commit.seed_ids]
    assert sorted(covered) == sorted(r["id"] for r in rows)  # each seed in exactly one commit
    # Split blocks would put a seed in two commits and reconciliation would then cut the later samples out.
    assert result.summary["kept"] == assert_invariant(sink, [r["id"] for r in rows])["data"] == 24


def test_a_resumed_run_gets_the_corpus_sample_of_its_first_attempt(ray_session, dry_config, tmp_path):
    first = [{"id": f"a{i}", "text": f"Alpha note {i} about tides and harbours."} for i in range(6)]
    seeds = write_jsonl(tmp_path / "texts.jsonl", first)
    config = dry_config(
        "recipe=taxonomy", "source=jsonl", f"source.uri={seeds}", "model.batch_size=2", "run.corpus_sample=3"
    )
    run(config)
    sink = Sink(config["sink"]["uri"])
    drawn = json.loads(sink.read_text(f"{ARTIFACTS}/taxonomy.json"))["sample_ids"]
    _crash(sink)
    for commit in load_commits(sink):  # the batch of a0 and a1 was committed; the others were lost
        if commit.seed_ids != ["a0", "a1"]:
            sink.remove(commit.name)
    sink.remove(f"{ARTIFACTS}/taxonomy.json")  # phase 1 runs again on the resume
    # Seeds the crashed attempt had not read yet change (same file, same config): a fresh draw would differ.
    write_jsonl(seeds, first[:2] + [{"id": f"b{i}", "text": f"Beta note {i} about trains."} for i in range(30)])
    result = run(config)
    assert result.summary["attempt"] == 2
    assert json.loads(sink.read_text("artifacts/taxonomy.json"))["sample_ids"] == drawn


def test_self_instruct_still_drops_a_near_copy_of_a_pooled_instruction_after_a_resume(
    ray_session, dry_config, tmp_path
):
    from generation.recipes.self_instruct import generated_id

    novel = "Explain how ocean tides form along rocky coasts."
    task = "Name a fruit that grows on trees."
    first = [{"id": "a", "instruction": task, "plant": novel}, {"id": "a-again", "instruction": task, "plant": novel}]
    seeds = write_jsonl(tmp_path / "tasks.jsonl", first)
    config = dry_config(
        "source=jsonl",
        f"source.uri={seeds}",
        "model.echo=true",
        "filters=none",
        "recipe.instruction_prompt='{plant}\n\n{examples}'",
        "recipe.num_examples=1",
        "recipe.samples_per_seed=1",
        "recipe.pool=[{id: human-1, instruction: 'Write a short poem about the quiet sea at night.'}]",
    )
    run(config)
    sink = Sink(config["sink"]["uri"])
    rejected = {r["seed_id"]: r for r in sink.read_kind("rejected").to_pylist()}
    [kept] = sink.read_kind("data").to_pylist()
    [(copy, row)] = rejected.items()  # the same instruction twice in one run: the second is a copy of the first
    assert {kept["seed_id"], copy} == {"a", "a-again"} and row["reject_reason"] == f"rouge_l_1.00:{generated_id(novel)}"
    _crash(sink)
    near = {"id": "b", "instruction": task, "plant": "Explain how the ocean tides form along rocky coasts."}
    write_jsonl(seeds, [*first, near])
    result = run(config)
    assert result.summary["resumed_seeds"] == 2
    resumed = {r["seed_id"]: r for r in sink.read_kind("rejected").to_pylist()}
    assert resumed["b"]["rejected_by"] == "self_instruct"
    assert resumed["b"]["reject_reason"].endswith(f":{generated_id(novel)}")  # the pool was rebuilt from the commits
    assert_invariant(sink, ["a", "a-again", "b"])
