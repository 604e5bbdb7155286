"""Filters decide with reasons; the stage applies them in order; exact dedup is global across workers."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import ray

from filtering.exact_dedup import ExactDedupFilter, normalize, start_shards
from filtering.length import LengthFilter
from filtering.refusal import RefusalFilter
from filtering.stage import FilterActor, build_filters, start_filter_state
from rayjobs.rows import row_schema


def _row(instruction: str, response: str, status: str = "ok") -> dict:
    return {
        "id": instruction + response,
        "seed_id": "s",
        "instruction": instruction,
        "response": response,
        "status": status,
    }


def test_length_bounds_name_field_and_direction():
    f = LengthFilter(min_chars=5, max_chars=20, min_words=2, fields=["response"])
    assert f.keep_batch([_row("x", "long enough text")]) == [(True, None)]
    assert f.keep_batch([_row("x", "abc")]) == [(False, "too_few_chars:response")]
    assert f.keep_batch([_row("x", "a" * 30)]) == [(False, "too_many_chars:response")]
    assert f.keep_batch([_row("x", "oneword!!")]) == [(False, "too_few_words:response")]


def test_refusal_phrases_are_case_and_space_insensitive_and_configurable():
    f = RefusalFilter()
    f.bind_fields(["instruction", "response"])
    assert f.keep_batch([_row("Tell me", "As an   AI language model, I can't")])[0] == (False, "phrase:as an ai")
    assert f.keep_batch([_row("Tell me", "Paris is the capital.")])[0] == (True, None)
    custom = RefusalFilter(phrases=["banana"], fields=["response"])
    assert custom.keep_batch([_row("x", "As an AI, no")])[0][0] is True
    assert custom.keep_batch([_row("x", "BANANA split")])[0] == (False, "phrase:banana")


def test_normalize_ignores_case_punctuation_and_spacing():
    assert normalize("Hello,   World!") == normalize("hello world") == "hello world"


def test_exact_dedup_is_global_across_filter_instances(ray_session):
    shards = start_shards(3)
    a, b = (
        ExactDedupFilter(fields=["instruction"], shards=shards),
        ExactDedupFilter(fields=["instruction"], shards=shards),
    )
    first = a.keep_batch([_row("Write a poem.", "r1"), _row("write a POEM", "r2"), _row("Other task", "r3")])
    assert first == [(True, None), (False, "duplicate"), (True, None)]
    # A second worker holding the same shard handles sees what the first one kept.
    assert b.keep_batch([_row("Write a poem!", "r4"), _row("New one", "r5")]) == [(False, "duplicate"), (True, None)]


def test_filter_stage_applies_steps_in_order_and_records_rejects(ray_session):
    steps = {"length": {"min_chars": 5, "fields": ["response"]}, "refusal": {}, "exact_dedup": {}}
    schema = row_schema({"instruction": pa.string(), "response": pa.string()})
    rows = [
        _row("Task one here", "a fine answer"),
        _row("Task two here", "no"),
        _row("Task three", "As an AI I refuse"),
        _row("task ONE here", "another fine answer"),
        {**_row("bad seed", ""), "status": "error", "stage": "input", "error": "x"},
    ]
    actor = FilterActor(steps=steps, text_fields=["instruction", "response"], shards=start_filter_state(steps))
    out = actor(pa.Table.from_pylist(rows, schema=schema)).to_pylist()
    assert [r["status"] for r in out] == ["ok", "rejected", "rejected", "ok", "error"]
    assert (out[1]["rejected_by"], out[1]["reject_reason"]) == ("length", "too_few_chars:response")
    assert out[2]["rejected_by"] == "refusal"
    # Dedup reads instruction+response by default, so same instruction with another answer is kept.
    assert out[4]["rejected_by"] is None


def test_a_conversation_column_reads_as_its_turns_and_pii_rewrites_each_turn():
    from filtering.base import as_text
    from filtering.pii import PIIRedactor

    turns = [{"role": "Ann", "content": "Mail me at ann@example.com"}, {"role": "Bo", "content": "As an AI, no."}]
    assert as_text(turns) == "Mail me at ann@example.com\nAs an AI, no."
    assert as_text(None) == "" and as_text(["a", "b"]) == "a\nb" and as_text("x") == "x"
    [(_, refusal)] = build_filters({"refusal": {}}, ["messages"])
    assert not refusal.keep_batch([{"messages": turns}])[0][0]  # the refusal is in the second turn
    assert refusal.keep_batch([{"messages": turns[:1]}]) == [(True, None)]
    row = {"messages": [dict(m) for m in turns]}
    PIIRedactor(fields=["messages"]).rewrite(row)
    assert row["messages"][0] == {"role": "Ann", "content": "Mail me at [EMAIL]"} and row["pii_redactions"] == 1


def test_unknown_filter_and_bad_params_name_the_step():
    with pytest.raises(ValueError, match=r"filters.nope: unknown filter 'nope'; valid choices: \["):
        build_filters({"nope": {}}, ["response"])
    with pytest.raises(ValueError, match="filters.length: bad parameters"):
        build_filters({"length": {"min_char": 3}}, ["response"])
    [(step, f)] = build_filters({"short": {"kind": "length", "min_chars": 3}}, ["response"])
    assert step == "short" and isinstance(f, LengthFilter) and f.fields == ["response"]


def test_echo_drops_answers_that_repeat_the_prompt():
    from filtering.echo import EchoFilter

    f = EchoFilter()
    f.bind_fields(["anything"])
    assert f.keep_batch([_row("Name a fruit.", "name a FRUIT")]) == [(False, "echoes:instruction")]
    assert f.keep_batch([_row("Write a long poem about rain.", "a long poem")]) == [(False, "echoes:instruction")]
    assert f.keep_batch([_row("Name a fruit.", "Apple.")]) == [(True, None)]
    assert f.keep_batch([{"response": "x"}]) == [(True, None)]


def test_pii_redacts_emails_ips_phones_and_counts_them():
    from filtering.pii import PIIRedactor

    f = PIIRedactor(fields=["response"])
    row = _row("x", "Mail ann.lee+x@mail.example.org or call +1 (555) 123-4567 from 10.0.0.12 on 2024-05-01.")
    assert f.keep_batch([row]) == [(True, None)]
    assert row["response"] == "Mail [EMAIL] or call [PHONE] from [IP] on 2024-05-01."
    assert row["pii_redactions"] == 3 and f.drain_counters() == {"email": 1, "ip": 1, "phone": 1}
    assert f.drain_counters() == {}
    clean = "Version 1.2.3 costs 42 euros on 2024-05-01 at 10:30; naïve café ☕"
    untouched = _row("x", clean)
    f.keep_batch([untouched])
    assert untouched["response"] == clean and untouched["pii_redactions"] == 0
    with pytest.raises(ValueError, match="valid choices"):
        PIIRedactor(kinds=["ssn"])


def test_threshold_bounds_and_missing_values():
    from filtering.threshold import ThresholdFilter

    f = ThresholdFilter(column="confidence", min=0.6)
    assert f.keep_batch([{"confidence": 0.8}, {"confidence": 0.5}, {"confidence": None}]) == [
        (True, None),
        (False, "confidence_below_0.6"),
        (False, "confidence_missing"),
    ]
    assert ThresholdFilter(column="score", max=9, keep_missing=True).keep_batch([{}, {"score": 10}]) == [
        (True, None),
        (False, "score_above_9"),
    ]
    with pytest.raises(ValueError, match="needs min or max"):
        ThresholdFilter(column="score")


def test_schema_filter_required_and_json():
    from filtering.schema import SchemaFilter

    f = SchemaFilter(
        required=["label"], json_fields={"votes": {"type": "object", "additionalProperties": {"type": "integer"}}}
    )
    assert f.keep_batch([{"label": "a", "votes": '{"a": 3}'}]) == [(True, None)]
    assert f.keep_batch([{"label": "", "votes": "{}"}]) == [(False, "missing:label")]
    assert f.keep_batch([{"label": "a", "votes": "{broken"}]) == [(False, "invalid_json:votes")]
    assert f.keep_batch([{"label": "a", "votes": '{"a": "x"}'}]) == [(False, "schema:votes:type")]


@pytest.mark.parametrize("text", ["", "ünïcödé 文字 🙂 " * 3, "word " * 200_000])
def test_text_filters_handle_empty_unicode_and_very_long_text(text):
    from filtering.fineweb import FineWebQualityFilter
    from filtering.gopher import GopherQualityFilter, GopherRepetitionFilter
    from filtering.pii import PIIRedactor

    for f in (
        LengthFilter(min_chars=1, max_chars=500_000),
        RefusalFilter(),
        PIIRedactor(),
        GopherQualityFilter(),
        GopherRepetitionFilter(),
        FineWebQualityFilter(),
    ):
        f.bind_fields(["response"])
        [(keep, reason)] = f.keep_batch([_row("task", text)])
        assert isinstance(keep, bool) and (keep or reason)


def test_near_dedup_catches_planted_near_copies_and_keeps_distinct_text(ray_session):
    import random

    from filtering.near_dedup import NearDedupFilter

    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(5000)]
    originals = [[rng.choice(vocab) for _ in range(100)] for _ in range(30)]
    copies = []
    for words in originals:  # one word changed in 100: shingle Jaccard ≈ 0.90
        changed = list(words)
        changed[rng.randrange(100)] = "changed"
        copies.append(changed)
    f = NearDedupFilter(fields=["response"], shards=start_shards(2))
    first = f.keep_batch([{"response": " ".join(w)} for w in originals])
    assert all(keep for keep, _ in first)  # distinct random texts share no band
    second = f.keep_batch([{"response": " ".join(w)} for w in copies])
    caught = sum(not keep for keep, _ in second)
    assert caught >= 29 and {r for k, r in second if not k} == {"near_duplicate"}
    empty, short, same_words = f.band_keys(["", "a b", "A, b!"])
    assert empty == [] and len(short) == 14 and short == same_words  # case and punctuation never make text new
    assert f.keep_batch([{"response": ""}, {"response": "short text"}]) == [(True, None), (True, None)]


GOOD_TEXT = (
    "The lighthouse stands on a group of rocks to the south of the harbour. The first tower was built of wood and "
    "it was lit in the year of the great storm, which destroyed it along with the keeper's house. Engineers then "
    "designed a stone tower that would resist the waves, and that tower shone for more than a century before the "
    "rock beneath it began to erode. Today visitors can climb the old tower and look out over the water."
)


@pytest.mark.parametrize(
    "text,reason",
    [
        (GOOD_TEXT, None),
        ("Too short to be a document.", "gopher_short_doc"),
        (" ".join(["supercalifragilisticexpialidocious"] * 60), "gopher_above_avg_threshold"),
        ("# " * 10 + GOOD_TEXT, "gopher_too_many_hashes"),
        ("\n".join("- the keeper waited with the lantern" for _ in range(20)), "gopher_too_many_bullets"),
        (" ".join(str(10_000 + i) for i in range(60)) + " the and of lighthouse", "gopher_below_alpha_threshold"),
        (
            " ".join(["lighthouse rocks harbour tower wood storm keeper engineers stone waves"] * 6),
            "gopher_enough_stop_words",
        ),
    ],
)
def test_gopher_quality_rules(text, reason):
    from filtering.gopher import GopherQualityFilter

    f = GopherQualityFilter(fields=["response"])
    assert f.keep_batch([{"response": text}]) == [(reason is None, reason)]


@pytest.mark.parametrize(
    "text,reason",
    [
        (GOOD_TEXT, None),
        ("", None),
        ("\n\n".join([GOOD_TEXT] * 3), "dup_para_frac"),
        ("\n".join(["the same line again and again"] * 5 + ["one other line here"]), "dup_line_frac"),
        (GOOD_TEXT + " " + "buy now " * 60, "top_2_gram"),
    ],
)
def test_gopher_repetition_rules(text, reason):
    from filtering.gopher import GopherRepetitionFilter

    f = GopherRepetitionFilter(fields=["response"])
    assert f.keep_batch([{"response": text}]) == [(reason is None, reason)]


def test_decontamination_names_the_leaked_benchmark(tmp_path):
    from filtering.decontamination import DecontaminationFilter

    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": GOOD_TEXT}) + "\n" + json.dumps({"question": "What is 2 + 2?"}) + "\n")
    f = DecontaminationFilter(
        benchmarks=[{"name": "lighthouse-qa", "path": str(bench), "fields": ["question"]}], fields=["response"]
    )
    leak = "As it happens, " + " ".join(GOOD_TEXT.split()[10:24]) + " and more."
    rows = [leak, "Nothing in common with any benchmark at all here.", "what is 2+2", "What is 2 + 3?"]
    assert f.keep_batch([{"response": text} for text in rows]) == [
        (False, "contaminated:lighthouse-qa"),
        (True, None),
        (False, "contaminated:lighthouse-qa"),
        (True, None),
    ]
    with pytest.raises(ValueError, match="cannot read"):
        DecontaminationFilter(benchmarks=[{"name": "x", "path": str(tmp_path / "missing.jsonl"), "fields": ["q"]}])


def test_rouge_l_matches_the_lcs_definition():
    from generation.novelty import rouge_l, tokens

    assert rouge_l(tokens("the cat sat on the mat"), tokens("the cat sat on the mat")) == 1.0
    # LCS("a b c d", "a c d e") = "a c d" → P = R = 3/4.
    assert rouge_l(list("abcd"), list("acde")) == pytest.approx(0.75)
    assert rouge_l([], ["a"]) == 0.0


def test_novelty_drops_close_paraphrases_and_stays_sublinear(ray_session):
    import random

    from filtering.novelty import NoveltyFilter

    rng = random.Random(5)
    vocab = [f"v{i}" for i in range(4000)]
    pool = [" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(2000)]
    [index] = NoveltyFilter.start_state(pool=pool)
    f = NoveltyFilter(field="instruction", shards=[index])
    copy = pool[7].split()
    copy[3] = "changed"
    verdicts = f.keep_batch(
        [
            {"instruction": " ".join(copy)},
            {"instruction": "write a poem about the quiet sea"},
            {"instruction": "write a poem about the quiet sea please"},
        ]
    )
    assert verdicts[0][0] is False and verdicts[0][1].startswith("rouge_l_")
    assert verdicts[1] == (True, None)
    assert verdicts[2][0] is False  # close to the one accepted just before it in the same batch
    stats = ray.get(index.stats.remote())
    assert stats["pool"] == 2001 and stats["compared"] < 3 * 50  # candidates, not the whole pool of 2,000


def test_language_filter_uses_the_packaged_model():
    from filtering.language import LanguageFilter

    f = LanguageFilter(languages=["en"], fields=["response"])
    rows = [
        {"response": GOOD_TEXT},
        {
            "response": "Der Leuchtturm steht auf einer Gruppe von Felsen südlich des "
            "Hafens und wurde im Jahr des großen Sturms zerstört."
        },
        {"response": ""},
    ]
    verdicts = f.keep_batch(rows)
    assert verdicts[0] == (True, None) and rows[0]["language"] == "en" and rows[0]["language_score"] > 0.9
    assert verdicts[1] == (False, "language_de") and verdicts[2] == (False, "no_text")


@pytest.mark.parametrize(
    "text,reason",
    [
        (GOOD_TEXT, None),
        ("\n".join(["Home", "About us", "Contact", "Products"] * 3), "line_punct_ratio"),
        ("\n".join(["Short line.", "Another one.", "Third."] * 2 + [GOOD_TEXT]), "short_line_ratio"),
        (GOOD_TEXT + "\n" + GOOD_TEXT, "char_dup_ratio"),
        ("", "empty"),
    ],
)
def test_fineweb_line_rules(text, reason):
    from filtering.fineweb import FineWebQualityFilter

    assert FineWebQualityFilter(fields=["response"]).keep_batch([{"response": text}]) == [(reason is None, reason)]


def test_classifier_filter_scores_in_batches_and_thresholds(tiny_classifier):
    from filtering.classifier import ClassifierFilter

    rows = [{"response": t} for t in ("good text", "bad text", "the good the bad", "", "text " * 300)]
    scorer = ClassifierFilter(
        model=tiny_classifier, label="toxic", max_score=1.0, batch_size=2, device="cpu", fields=["response"]
    )
    assert all(keep for keep, _ in scorer.keep_batch(rows))
    scores = [r["classifier_score"] for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 1
    cut = sorted(scores)[2]
    strict = ClassifierFilter(model=tiny_classifier, label="toxic", max_score=cut, device="cpu", fields=["response"])
    verdicts = strict.keep_batch([dict(r) for r in rows])
    assert [keep for keep, _ in verdicts] == [s <= cut for s in scores]
    assert {reason for keep, reason in verdicts if not keep} == {f"score_above_{cut}"}
    with pytest.raises(ValueError, match="not in the model's labels"):
        ClassifierFilter(model=tiny_classifier, label="spam", max_score=0.5, fields=["response"]).keep_batch(rows)


def test_the_registry_names_each_filter_by_its_own_name():
    from filtering import FILTERS, filter_class

    assert all(filter_class(kind).name == kind for kind in FILTERS)
    with pytest.raises(ValueError, match="unknown filter 'nope'; valid choices"):
        filter_class("nope")
