"""The whole pipeline on the dry-run engine: layout, schema, accounting, errors as rows, overwrite guard."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from generation.seeds import builtin_seeds
from rayjobs.pipeline import run
from rayjobs.sink import Sink
from tests.conftest import SELF_INSTRUCT_COLUMNS, write_jsonl


def _read(uri: str, kind: str):
    sink = Sink(uri)
    return sink.read_kind(kind)


def test_dry_run_writes_the_documented_layout(ray_session, dry_config):
    config = dry_config("source.limit=10", "recipe.samples_per_seed=3")
    result = run(config)
    uri = config["sink"]["uri"]
    sink = Sink(uri)
    for name in ("run.json", "report.html", "README.md", "_SUCCESS"):
        assert sink.exists(name), name
    data = _read(uri, "data")
    assert set(SELF_INSTRUCT_COLUMNS) <= set(data.column_names)
    assert "status" not in data.column_names and "error" not in data.column_names
    ids = data["id"].to_pylist()
    assert len(ids) == len(set(ids)) == 30
    assert set(data["seed_id"].to_pylist()) == {f"seed-{i:03d}" for i in range(1, 11)}
    record = json.loads(sink.read_text("run.json"))
    assert record["summary"]["kept"] == 30 and record["summary"]["seeds_read"] == 10
    assert record["versions"]["ray"] and result.summary["completion_tokens"] > 0


def _all_ids(uri: str) -> list[str]:
    return sorted(i for kind in ("data", "rejected", "errors") if (t := _read(uri, kind)) for i in t["id"].to_pylist())


def test_ids_are_deterministic_across_runs(ray_session, dry_config):
    # Which of two near-identical instructions self_instruct keeps depends on which finished first; the ids do not.
    first = run(dry_config("source.limit=4"))
    ids_first = _all_ids(first.sink.uri)
    second = run(dry_config("source.limit=4", "run.overwrite=true"))
    assert _all_ids(second.sink.uri) == ids_first and len(ids_first) == 8


def test_finished_run_is_not_overwritten_by_default(ray_session, dry_config):
    run(dry_config("source.limit=2"))
    with pytest.raises(FileExistsError, match="run.overwrite=true"):
        run(dry_config("source.limit=2"))


def test_bad_rows_go_to_errors_and_every_seed_is_accounted(ray_session, dry_config, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "\n".join(
            [
                json.dumps({"id": "good", "instruction": "Write a limerick about cats."}),
                json.dumps({"id": "no-instruction", "input": "x"}),
                json.dumps({"id": "wrong-type", "instruction": 42}),
                '{"id": "truncated", "instr',
                json.dumps({"id": "dup-text", "instruction": "Write a limerick about cats."}),
            ]
        )
        + "\n"
    )
    config = dry_config("source=jsonl", f"source.uri={seeds}", "recipe.samples_per_seed=1")
    result = run(config)
    errors = _read(config["sink"]["uri"], "errors").to_pylist()
    by_seed = {e["seed_id"]: e for e in errors}
    assert set(by_seed) == {"no-instruction", "wrong-type", "seeds.jsonl:4"}
    assert all(e["stage"] == "input" and e["error"] and e["seed"] for e in errors)
    assert "required text field" in by_seed["no-instruction"]["error"]
    assert result.summary["seeds_accounted"] == 5
    data = _read(config["sink"]["uri"], "data")
    rejected = _read(config["sink"]["uri"], "rejected")
    seen = set(data["seed_id"].to_pylist()) | set(by_seed) | set(rejected["seed_id"].to_pylist() if rejected else [])
    assert seen == {"good", "no-instruction", "wrong-type", "seeds.jsonl:4", "dup-text"}


def test_seeds_and_outputs_arrow_cannot_hold_become_error_rows_and_the_run_completes(ray_session, dry_config, tmp_path):
    """One bad string used to fail its whole batch (Ray retried it, then the run died): in a seed's text or id (text
    UTF-8 cannot encode), in model output (an escape of half an emoji parsed out of JSON) or a recipe field of the
    wrong type. Every other seed of the batch completes."""
    lines = [
        json.dumps({"id": "good", "text": '{"label": "fine", "count": 3}'}),
        '{"id": "in-surrogate", "text": "bad \\ud800 text"}',
        '{"id": "id-\\udfff", "text": "{}"}',
        "[1, 2]",
        "[" * 50_000 + "]" * 50_000,
        json.dumps({"id": "out-surrogate", "text": '{"label": "half an emoji \\ud83d", "count": 1}'}),
        json.dumps({"id": "out-type", "text": '{"label": "ok", "count": "many"}'}),
        json.dumps({"id": "good-2", "text": '{"label": "also fine", "count": 4}'}),
    ]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(lines) + "\n")
    config = dry_config(
        "recipe=template",
        "source=jsonl",
        f"source.uri={seeds}",
        "model.echo=true",
        "model.batch_size=8",
        "filters=none",
        "recipe.messages=[{role: user, content: '{text}'}]",
        "+recipe.json_schema={type: object, properties: {label: {type: string}, count: {type: integer}}}",
    )
    result = run(config)
    errors = {e["seed_id"]: e for e in _read(config["sink"]["uri"], "errors").to_pylist()}
    stages = {seed_id: e["stage"] for seed_id, e in errors.items()}
    assert stages == {
        "in-surrogate": "input",
        "seeds.jsonl:3": "input",  # the unencodable id falls back to file:line, and says so
        "seeds.jsonl:4": "input",
        "seeds.jsonl:5": "input",
        "out-surrogate": "output",
        "out-type": "output",
    }
    assert "UTF-8 cannot encode in field 'text'" in errors["in-surrogate"]["error"]
    assert "seed id 'id-\\udfff'" in errors["seeds.jsonl:3"]["error"]
    assert "not an object" in errors["seeds.jsonl:4"]["error"]
    assert "nested deeper" in errors["seeds.jsonl:5"]["error"]
    assert "label='half an emoji \\ud83d'" in errors["out-surrogate"]["error"]
    assert "count='many'" in errors["out-type"]["error"] and errors["out-type"]["completion_tokens"] > 0
    assert all(e["seed"] for e in errors.values())
    data = _read(config["sink"]["uri"], "data").to_pylist()
    assert sorted((r["seed_id"], r["label"], r["count"]) for r in data) == [
        ("good", "fine", 3),
        ("good-2", "also fine", 4),
    ]
    assert result.summary["seeds_accounted"] == result.summary["seeds_read"] == 8


def _planted_dialogue(turns: list[tuple[str, str]]) -> str:
    """A dialogue seed whose topic makes the echo engine answer every step of the recipe: its subtopic is a JSON
    object holding the personas, the plan and the turns, which the overridden prompts echo back."""
    everything = {
        "personas": [{"name": "Ann", "description": "a nurse"}, {"name": "Bo", "description": "a chef"}],
        "setting": "a cafe",
        "tone": "warm",
        "goal": "plan a trip",
        "turns": [{"speaker": s, "text": text} for s, text in turns],
    }
    return json.dumps({"subtopics": [json.dumps(everything)]})


def test_filters_and_figures_read_every_turn_of_a_dialogue(ray_session, dry_config, tmp_path):
    refusing = [("Ann", "Shall we go to Lisbon in May?"), ("Bo", "I'm sorry, but I can't help with planning trips.")]
    clean = [("Ann", "Shall we go to Porto in June this year?"), ("Bo", "Yes, the river walks are lovely then.")]
    seeds = write_jsonl(
        tmp_path / "topics.jsonl",
        [{"id": "refusing", "topic": _planted_dialogue(refusing)}, {"id": "clean", "topic": _planted_dialogue(clean)}],
    )
    config = dry_config(
        "recipe=dialogue",
        "source=jsonl",
        f"source.uri={seeds}",
        "model.echo=true",
        "recipe.subtopics_per_topic=1",
        "recipe.subtopic_prompt='{topic}'",
        "recipe.persona_prompt='{subtopic}'",
        "recipe.plan_prompt='{subtopic}'",
        "recipe.dialogue_prompt='{plan}'",
    )
    result = run(config)
    [rejected] = _read(config["sink"]["uri"], "rejected").to_pylist()
    assert (rejected["seed_id"], rejected["rejected_by"]) == ("refusing", "refusal")  # the refusal was in turn 2
    [kept] = _read(config["sink"]["uri"], "data").to_pylist()
    assert kept["seed_id"] == "clean" and [m["role"] for m in kept["messages"]] == ["Ann", "Bo"]
    record = json.loads(Sink(config["sink"]["uri"]).read_text("run.json"))
    assert record["run"]["text_fields"] == ["messages"]
    assert record["quality"]["fields"]["messages"]["distinct_1"] > 0  # figures from the turns' words
    assert "Bo: Yes, the river walks are lovely then." in Sink(config["sink"]["uri"]).read_text("report.html")
    assert result.summary["seeds_accounted"] == 2


def test_taxonomy_phase_one_reads_only_the_runs_own_source(ray_session, dry_config, tmp_path):
    texts = {f"mine-{i}": f"Harbour log {i}: the ferry left pier {i} late because of fog." for i in range(8)}
    seeds = write_jsonl(tmp_path / "mine.jsonl", [{"id": k, "text": v} for k, v in texts.items()])
    config = dry_config("recipe=taxonomy", "source=jsonl", f"source.uri={seeds}", "model.echo=true", "filters=none")
    result = run(config)
    sink = Sink(config["sink"]["uri"])
    taxonomy = json.loads(sink.read_text("artifacts/taxonomy.json"))
    assert set(taxonomy["sample_ids"]) <= set(texts) and len(taxonomy["sample_ids"]) == 8
    # Echo mode summarises a text by repeating the prompt: every summary quotes one of the user's texts.
    assert taxonomy["summaries"] and all("Harbour log" in s for s in taxonomy["summaries"])
    builtin = {row["text"] for row in builtin_seeds("texts")}
    assert not any(text in s for s in taxonomy["summaries"] for text in builtin)
    corpus = [json.loads(line) for line in sink.read_text("_synthray/artifacts/corpus_sample/rows.jsonl").splitlines()]
    assert sorted(r["id"] for r in corpus) == sorted(texts) and result.summary["corpus_sample"] == 8


def test_a_recipe_that_cannot_use_the_corpus_sample_stops_before_ray_naming_it(dry_config, tmp_path):
    seeds = write_jsonl(tmp_path / "notext.jsonl", [{"id": "a", "body": "x"}, {"id": "b", "body": "y"}])
    config = dry_config("recipe=taxonomy", "source=jsonl", f"source.uri={seeds}")
    with pytest.raises(ValueError, match=r"at least 2 texts; the run's corpus sample \(2 seeds; seeds need"):
        run(config)
    with pytest.raises(ValueError, match="run.corpus_sample must be a whole number"):
        run(dry_config("recipe=taxonomy", "run.corpus_sample=0"))


def test_an_oversized_seed_becomes_an_error_and_its_batch_is_unaffected(ray_session, dry_config, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    huge = "word " * 600_000  # 3 MB: over the engine's context, and a big row for every stage to carry
    rows = [{"id": f"ok-{i}", "instruction": f"Describe the number {i}."} for i in range(5)]
    rows.insert(2, {"id": "huge", "instruction": huge})
    write_jsonl(seeds, rows)
    config = dry_config("source=jsonl", f"source.uri={seeds}", "recipe=template", "model.batch_size=8")
    result = run(config)
    errors = _read(config["sink"]["uri"], "errors").to_pylist()
    assert [(e["seed_id"], e["stage"]) for e in errors] == [("huge", "engine")]
    assert "over max_model_len" in errors[0]["error"]
    assert set(_read(config["sink"]["uri"], "data")["seed_id"].to_pylist()) == {f"ok-{i}" for i in range(5)}
    assert result.summary["errors_by_stage"] == {"engine": 1} and result.summary["seeds_accounted"] == 6


def test_rejected_rows_carry_filter_and_reason(ray_session, dry_config):
    config = dry_config("source.limit=6", "filters.length.min_words=1000")
    result = run(config)
    rejected = _read(config["sink"]["uri"], "rejected")
    assert result.summary["kept"] == 0 and rejected.num_rows == result.summary["generated"] > 0
    assert set(rejected["rejected_by"].to_pylist()) == {"length"}
    funnel = {f["step"]: f for f in result.summary["filters"]}
    assert list(funnel) == ["length", "refusal", "echo", "exact_dedup"]
    assert funnel["length"]["seen"] == result.summary["generated"] == funnel["length"]["dropped"]
    assert all(f["seen"] == f["kept"] + f["dropped"] for f in funnel.values())
    assert sum(f["seconds"] for f in funnel.values()) > 0  # exact_dedup alone asks its shard actors
    assert all(r.startswith("too_few_words:") for r in rejected["reject_reason"].to_pylist())
    assert "error" not in rejected.column_names
    sink = Sink(config["sink"]["uri"])
    assert pq.read_metadata(sink.path(sink.list("rejected", suffix=".parquet")[0])).num_rows > 0
    html = Sink(config["sink"]["uri"]).read_text("report.html")
    assert "Funnel" in html and "<td>length</td>" in html and "too_few_words:" in html


def test_secrets_never_reach_run_json(ray_session, dry_config, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sup3r-s3cret-value")
    config = dry_config("source.limit=1")
    config["sink"]["aws_secret"] = "another-secret-1234"  # masked by its key name
    config["sink"]["note"] = "token sup3r-s3cret-value"  # scrubbed because it is an env secret's value
    run(config)
    sink = Sink(config["sink"]["uri"])
    for name in ("run.json", "report.html", "README.md"):
        text = sink.read_text(name)
        assert "sup3r-s3cret-value" not in text and "another-secret-1234" not in text


@pytest.mark.parametrize(
    "recipe",
    [
        "attr_prompt",
        "entigraph",
        "doc_qa",
        "augment",
        "dialogue",
        "targen",
        "back_translate",
        "pseudo_label",
        "taxonomy",
        "judge",
        "critique_revise",
        "graded_relevance",
        "template",
    ],
)
def test_every_recipe_runs_end_to_end_with_no_other_argument(ray_session, dry_config, recipe):
    config = dry_config(f"recipe={recipe}", "source.limit=2", f"run.name=all-{recipe}")
    result = run(config)
    assert result.summary["seeds_accounted"] == result.summary["seeds_read"] == 2
    tables = [t for t in (_read(config["sink"]["uri"], k) for k in ("data", "rejected", "errors")) if t is not None]
    ids = [i for t in tables for i in t["id"].to_pylist()]
    assert ids and len(ids) == len(set(ids))
    rejected = _read(config["sink"]["uri"], "rejected")
    if rejected is not None:  # a recipe's own check names the recipe as the rejecter
        assert set(rejected["rejected_by"].to_pylist()) <= {recipe, "length", "refusal", "echo", "exact_dedup"}
    balance = result.summary["balance"]
    if recipe == "attr_prompt":  # 2 seeds × 4 samples, each seed's own labels, attributes proposed per task
        assert set(balance) == {"label"} and sum(balance["label"].values()) == result.summary["kept"]
        assert set(balance["label"]) <= {
            label for task in builtin_seeds("classification_tasks") for label in task["labels"]
        }
        assert len(Sink(config["sink"]["uri"]).list("artifacts", suffix=".json")) == 2  # one per task
        assert "Label and attribute balance" in Sink(config["sink"]["uri"]).read_text("report.html")
    if recipe == "pseudo_label":
        assert sum(balance["label"].values()) == result.summary["kept"]
    if recipe == "taxonomy":
        taxonomy = json.loads(Sink(config["sink"]["uri"]).read_text("artifacts/taxonomy.json"))
        assert len(taxonomy["labels"]) >= 2


def test_filter_columns_and_counters_reach_output_and_run_json(ray_session, dry_config, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "\n".join(json.dumps({"id": f"s{i}", "instruction": f"Write to ann{i}@example.com now."}) for i in range(3))
        + "\n"
    )
    config = dry_config(
        "recipe=template",
        "source=jsonl",
        f"source.uri={seeds}",
        "filters=none",
        "+filters.pii.fields=[response]",
        "+filters.high.kind=threshold",
        "+filters.high.column=completion_tokens",
        "+filters.high.min=1",
    )
    result = run(config)
    data = _read(config["sink"]["uri"], "data")
    assert "pii_redactions" in data.column_names and result.summary["kept"] == 3
    assert [f["step"] for f in result.summary["filters"]] == ["pii", "high"]
    assert result.summary["filter_counters"] == {} or set(result.summary["filter_counters"]) <= {
        "pii.email",
        "pii.ip",
        "pii.phone",
    }


def test_planted_exact_near_duplicates_and_benchmark_leak_are_caught(ray_session, dry_config, tmp_path):
    import random

    rng = random.Random(3)
    vocab = [f"word{i}" for i in range(3000)]

    def text() -> str:
        return " ".join(rng.choice(vocab) for _ in range(80))

    base, leaked_source = text(), text()
    near = base.split()
    near[40] = "changed"
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": leaked_source}) + "\n")
    # One block holds the original and both copies, in this order, so "first seen" is the original.
    rows = {
        "base": base,
        "exact-copy": base.upper() + " !",
        "near-copy": " ".join(near),
        "clean-1": text(),
        "clean-2": text(),
        "leak": "Intro words here. " + " ".join(leaked_source.split()[20:40]),
    }
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"id": k, "instruction": v} for k, v in rows.items()])
    config = dry_config(
        "recipe=template",
        "source=jsonl",
        f"source.uri={seeds}",
        "model.echo=true",
        "model.batch_size=3",
        "filters=none",
        f"+filters.decontamination.benchmarks=[{{name: bench, path: '{bench}', fields: [question]}}]",
        "+filters.exact_dedup.num_shards=2",
        "+filters.near_dedup.num_shards=2",
    )
    result = run(config)
    rejected = {
        r["seed_id"]: (r["rejected_by"], r["reject_reason"])
        for r in _read(config["sink"]["uri"], "rejected").to_pylist()
    }
    assert rejected["leak"] == ("decontamination", "contaminated:bench")
    assert rejected["exact-copy"] == ("exact_dedup", "duplicate")
    assert rejected["near-copy"] == ("near_dedup", "near_duplicate")
    assert "base" not in rejected
    kept = set(_read(config["sink"]["uri"], "data")["seed_id"].to_pylist())
    assert {"clean-1", "clean-2"} <= kept and len(kept) + len(rejected) == len(rows)
    funnel = result.summary["filters"]
    assert [f["step"] for f in funnel] == ["decontamination", "exact_dedup", "near_dedup"]
    assert funnel[0]["seen"] == len(rows) and all(f["seen"] == f["kept"] + f["dropped"] for f in funnel)
    assert funnel[-1]["kept"] == result.summary["kept"]
