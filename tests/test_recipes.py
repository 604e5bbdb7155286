"""Every recipe's program flow with the dry-run engine or a scripted engine: calls, fan-out, parsing, errors."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from generation.engines import Completion, DryRunEngine
from generation.recipes import RECIPES, Sample, build_recipe
from generation.seeds import builtin_seeds
from rayjobs.rows import row_schema
from tests.conftest import make_config


def _recipe(name: str, *overrides: str):
    """The recipe a run would build, given its built-in seed set as the corpus sample (as source=builtin does)."""
    config = make_config([f"recipe={name}", "model=dry_run", *overrides])
    recipe = build_recipe(config["recipe"])
    if hasattr(recipe, "bind_corpus"):
        recipe.bind_corpus([dict(row) for row in builtin_seeds(config["source"]["dataset"])])
    return recipe, config


def _run(recipe, seed, engine=None):
    return asyncio.run(recipe.run(dict(seed), engine or DryRunEngine(), random.Random(0)))


class Scripted:
    """An engine that answers from a function of (messages, json_schema) and records every call; ``scores`` answers
    ``score`` from a function of (prompt, choices) (a dict of probabilities, or a Completion)."""

    model_name = "scripted"

    def __init__(self, answer, scores=None):
        self.answer, self.calls, self.scores = answer, [], scores

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def chat(self, messages, *, n=1, json_schema=None, **sampling):
        self.calls.append({"prompt": messages[-1]["content"], "schema": json_schema, "n": n})
        reply = self.answer(messages[-1]["content"], json_schema)
        if isinstance(reply, Completion):
            return reply
        texts = reply if isinstance(reply, list) else [reply] * n
        return Completion([t if isinstance(t, str) else json.dumps(t) for t in texts], 10, 5)

    generate = chat

    async def score(self, messages, choices):
        self.calls.append({"prompt": messages[-1]["content"], "choices": list(choices)})
        reply = self.scores(messages[-1]["content"], list(choices)) if self.scores else None
        if reply is None:
            return Completion(error="scripted engine cannot score")
        return reply if isinstance(reply, Completion) else Completion(prompt_tokens=30, scores=reply)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_runs_on_its_builtin_seeds_with_the_dry_engine(name):
    recipe, config = _recipe(name)
    row_schema(recipe.columns)  # no clash with synthray's own columns
    seeds = builtin_seeds(config["source"]["dataset"])[:2]
    for seed in seeds:
        samples = _run(recipe, seed)
        assert samples, name
        for sample in samples:
            assert sample.error is None, (name, sample.error)
            assert set(sample.fields) <= set(recipe.columns), set(sample.fields) - set(recipe.columns)
        assert sum(s.completion_tokens for s in samples) > 0


def test_attr_prompt_fixed_attributes_are_used_evenly_with_each_seeds_own_labels():
    recipe, _ = _recipe(
        "attr_prompt", "recipe.samples_per_seed=3", "recipe.attributes={topic: [food, travel], style: [formal, casual]}"
    )
    sets = {"sentiment": ["positive", "negative"], "intent": ["billing", "technical problem", "account access"]}
    counts: dict = {}
    for i in range(24):  # 12 seeds per label set × 3 samples
        task = "sentiment" if i % 2 else "intent"
        for sample in _run(recipe, {"task": task, "labels": sets[task]}):
            assert sample.fields["label"] in sets[task] and sample.fields["text"]  # only the seed's own labels
            key = (task, sample.fields["label"], sample.fields["topic"], sample.fields["style"])
            counts[key] = counts.get(key, 0) + 1
    for task, labels in sets.items():
        per_label = [sum(n for k, n in counts.items() if k[:2] == (task, label)) for label in labels]
        assert sum(per_label) == 36 and max(per_label) - min(per_label) <= 1  # labels evenly
        per_pair = [n for k, n in counts.items() if k[0] == task]
        assert len(per_pair) == len(labels) * 4 and max(per_pair) - min(per_pair) <= 1  # combinations evenly
    assert set(recipe.columns) == {"topic", "style", "label", "text"}
    [bad] = _run(recipe, {"task": "x", "labels": "positive"})
    assert bad.stage == "input" and "non-empty list of strings" in bad.error
    [none] = _run(recipe, {"task": "x"})
    assert none.stage == "input" and "recipe.labels" in none.error
    with pytest.raises(ValueError, match="recipe.attributes.label: labels are not an attribute"):
        _recipe("attr_prompt", "recipe.attributes={label: [a, b]}")


def test_attr_prompt_proposes_dimensions_and_class_specific_values_once_per_task():
    recipe, _ = _recipe("attr_prompt", "recipe.samples_per_seed=4", "recipe.labels=[sports, politics]")

    def answer(prompt, schema):
        if schema and "dimensions" in schema["properties"]:
            return {
                "dimensions": [
                    {"name": "Subtopic", "class_specific": True},
                    {"name": "length", "class_specific": False},
                ]
            }
        if schema and 'class "sports"' in prompt:
            return {"values": ["football transfers", "tennis finals"]}
        if schema and 'class "politics"' in prompt:
            return {"values": ["elections", "budget debates", "elections"]}
        if schema:
            return {"values": ["one sentence", "two sentences"]}
        return "A generated headline."

    engine = Scripted(answer)
    samples = [s for _ in range(5) for s in _run(recipe, {"task": "news headlines"}, engine)]
    proposal_calls = [c for c in engine.calls if c["schema"]]
    assert len(proposal_calls) == 1 + 2 + 1  # dimensions; subtopic for each class; length once: once for the run
    subtopics = {"sports": {"football transfers", "tennis finals"}, "politics": {"elections", "budget debates"}}
    for s in samples:
        assert s.error is None and s.fields["attributes"]["subtopic"] in subtopics[s.fields["label"]]
        assert s.fields["attributes"]["length"] in {"one sentence", "two sentences"}
    assert sum(s.fields["label"] == "sports" for s in samples) == 10  # 20 samples, two labels in turn
    pairs = [(s.fields["label"], *s.fields["attributes"].values()) for s in samples]
    assert len(set(pairs)) == 8 and max(map(pairs.count, set(pairs))) - min(map(pairs.count, set(pairs))) <= 1
    prompt = engine.calls[-1]["prompt"]
    assert "- subtopic: " in prompt and "- length: " in prompt and "news headlines" in prompt
    [artifact] = [v for k, v in asyncio.run(recipe.state.values()).items() if k.startswith("artifact/attributes-")]
    assert artifact["task"] == "news headlines" and [d["name"] for d in artifact["dimensions"]] == [
        "subtopic",
        "length",
    ]


def test_entigraph_extracts_then_relates_sampled_pairs_and_triples():
    recipe, _ = _recipe("entigraph", "recipe.pairs_per_document=2", "recipe.triples_per_document=1")
    engine = Scripted(lambda p, s: {"entities": ["Bees", "Almonds", "Varroa", "bees"]} if s else "They interact.")
    samples = _run(recipe, {"text": "Bees pollinate almonds; varroa harms bees."}, engine)
    assert len(engine.calls) == 1 + 3 and engine.calls[0]["schema"] is not None
    assert [len(s.fields["entity_group"]) for s in samples] == [2, 2, 3]
    assert samples[0].fields["entities"] == ["Bees", "Almonds", "Varroa"]  # case-duplicates merged
    bad = _run(recipe, {"text": "x"}, Scripted(lambda p, s: "no json here"))
    assert len(bad) == 1 and bad[0].stage == "parse"


def test_doc_qa_chunks_by_tokens_and_keeps_answers_whose_evidence_is_in_the_chunk():
    from generation.recipes.doc_qa import chunk_text

    text = "One two three. Four five six. Seven eight nine ten."
    assert chunk_text(text, 6, lambda t: len(t.split())) == ["One two three. Four five six.", "Seven eight nine ten."]
    recipe, _ = _recipe("doc_qa", "recipe.chunk_tokens=16", "recipe.questions_per_chunk=2")
    assert _recipe("doc_qa")[0].chunk_tokens == 512

    def answer(prompt, schema):
        if "questions" in schema["properties"]:
            return {"questions": ["Q1?", "Q2?"]}
        if "supported" in schema["properties"]:
            raise AssertionError("no judge is set: no support call")
        chunk = prompt.split("Passage:\n", 1)[1]
        quoted = chunk.split(".")[0] if "Q1?" in prompt else "words the passage never says"
        return {"answer": "An answer.", "evidence": f"\u201c{quoted.upper()}.\u201d"}  # quotes, case: normalised

    document = " ".join([f"Sentence number {i} is here." for i in range(8)])
    samples = _run(recipe, {"text": document}, Scripted(answer))
    chunks = {s.fields["chunk_index"] for s in samples}
    assert len(chunks) >= 2 and len(samples) == 2 * len(chunks)
    assert {s.reject_reason for s in samples} == {None, "evidence_not_in_chunk"}
    assert all(s.fields["evidence_found"] == (s.reject_reason is None) for s in samples)
    assert all(s.fields.get("supported") is None for s in samples)


def test_doc_qa_asks_the_judge_role_for_support_when_the_run_sets_one():
    from generation.roles import Engines

    recipe, _ = _recipe("doc_qa", "recipe.chunk_tokens=64", "recipe.questions_per_chunk=1")
    chunk = "The harbor opens at dawn. Boats leave at noon."
    generator = Scripted(
        lambda p, s: (
            {"questions": ["When?"]}
            if "questions" in s["properties"]
            else {"answer": "At dawn.", "evidence": "The harbor opens at dawn"}
        )
    )
    judge = Scripted(lambda p, s: {"supported": False})
    [sample] = _run(recipe, {"text": chunk}, Engines({"generator": generator, "judge": judge}))
    assert len(judge.calls) == 1 and "Answer: At dawn." in judge.calls[0]["prompt"]
    assert sample.reject_reason == "answer_not_supported_by_chunk" and sample.fields["evidence_found"] is True
    assert set(sample.usage) == {"generator", "judge"} and sample.usage["judge"]["calls"] == 1


@pytest.mark.parametrize("strategy,calls", [("answer_augmentation", 1), ("question_rephrase", 1), ("new_question", 3)])
def test_augment_strategies(strategy, calls):
    recipe, _ = _recipe("augment", f"recipe.strategy={strategy}", "recipe.n=2")
    engine = Scripted(lambda p, s: "generated text")
    samples = _run(recipe, {"instruction": "Name a fruit.", "output": "Apple."}, engine)
    assert len(samples) == 2 and len(engine.calls) == calls and engine.calls[0]["n"] == 2
    assert all(s.fields["strategy"] == strategy for s in samples)
    if strategy == "question_rephrase":
        assert all(s.fields["response"] == "Apple." for s in samples)
    with pytest.raises(ValueError, match="valid choices"):
        _recipe("augment", "recipe.strategy=nope")


def test_dialogue_flow_and_messages():
    recipe, _ = _recipe("dialogue", "recipe.subtopics_per_topic=2")

    def answer(prompt, schema):
        key = next(iter(schema["properties"]))
        return {
            "subtopics": {"subtopics": ["a", "b"]},
            "personas": {"personas": [{"name": "Ann", "description": "x"}, {"name": "Bo", "description": "y"}]},
            "setting": {"setting": "cafe", "tone": "warm", "goal": "decide"},
            "turns": {"turns": [{"speaker": "Ann", "text": "Hi"}, {"speaker": "Bo", "text": "Hello"}]},
        }[key]

    engine = Scripted(answer)
    samples = _run(recipe, {"topic": "pets"}, engine)
    assert len(samples) == 2 and len(engine.calls) == 1 + 2 * 3
    assert samples[0].fields["messages"] == [{"role": "Ann", "content": "Hi"}, {"role": "Bo", "content": "Hello"}]


@pytest.mark.parametrize("on_mismatch", ["correct", "drop"])
def test_targen_relabels_and_corrects_or_drops(on_mismatch):
    recipe, _ = _recipe("targen", f"recipe.on_mismatch={on_mismatch}", "recipe.contexts_per_task=1")

    def answer(prompt, schema):
        if schema and "contexts" in schema["properties"]:
            return {"contexts": ["a shop"]}
        if schema:
            return {"label": "pos"}  # the model always says pos
        return "A text."

    samples = _run(recipe, {"task": "sentiment", "labels": ["pos", "neg"]}, Scripted(answer))
    by_intent = {s.fields["intended_label"]: s for s in samples}
    assert by_intent["pos"].fields["corrected"] is False and by_intent["pos"].reject_reason is None
    assert by_intent["neg"].fields["corrected"] is True and by_intent["neg"].fields["label"] == "pos"
    assert (by_intent["neg"].reject_reason is not None) == (on_mismatch == "drop")
    [bad] = _run(recipe, {"task": "x", "labels": ["only"]}, Scripted(answer))
    assert bad.stage == "input"


def test_back_translate_checks_a_checkable_answer_by_value_and_asks_the_judge_for_free_text():
    from generation.roles import Engines

    recipe, _ = _recipe("back_translate", "recipe.attempts=2")
    forwards = iter(["So 2 + 2 = 4.00 in all.", "I count 5."])
    generator = Scripted(lambda p, s: "How much is 2 + 2?" if "answer written" in p else next(forwards))
    judge = Scripted(lambda p, s: {"match": True, "reason": "same"})
    engines = Engines({"generator": generator, "judge": judge})
    samples = _run(recipe, {"output": "4"}, engines)
    assert sorted(str(s.reject_reason) for s in samples) == ["None", "forward_result_does_not_match"]
    assert {s.fields["verified_by"] for s in samples} == {"value"} and not judge.calls  # no model asked
    assert sorted(s.fields["forward_answer"] for s in samples) == ["4", "5"]
    assert all(s.fields["response"] == "4" and s.fields["expected_answer"] == "4" for s in samples)

    recipe, _ = _recipe("back_translate")
    engines = Engines({"generator": Scripted(lambda p, s: "Paris."), "judge": judge})
    [free] = _run(recipe, {"output": "Paris is the capital of France."}, engines)
    assert free.fields["verified_by"] == "llm" and free.reject_reason is None and len(judge.calls) == 1


@pytest.mark.parametrize(
    "reference,forward,kind,same",
    [
        ("42", "Adding them gives 40, then 2 more: 42.", "number", True),
        ("#### 1,250", "The total is 1250.0", "number", True),
        ("0.5", "It is 1/2.", "number", True),
        ("\\boxed{7}", "so the answer is 8, not 7? No: the answer is 8", "number", False),
        ("(B)", "A is wrong, so the answer is B.", "choice", True),
        ("Answer: C", "I pick (D)", "choice", False),
        ('{"x": 1, "y": [2]}', 'Result: {"y": [2], "x": 1}', "json", True),
        ("Water boils at 100 degrees Celsius at sea level.", "", None, None),
    ],
)
def test_checkable_answers_are_read_and_compared_by_value(reference, forward, kind, same):
    from generation.answers import candidate_answer, reference_answer, same_value

    expected = reference_answer(reference)
    assert (expected.kind if expected else None) == kind
    if expected is not None:
        assert same_value(expected, candidate_answer(forward, expected.kind)) is same


def test_pseudo_label_majority_vote_and_confidence():
    recipe, _ = _recipe("pseudo_label", "recipe.n=5", "recipe.min_confidence=0.5")
    votes = [{"label": "billing"}] * 3 + [{"label": "delivery"}, "garbage"]
    [sample] = _run(recipe, {"text": "refund please"}, Scripted(lambda p, s: votes))
    assert sample.fields["label"] == "billing" and sample.fields["confidence"] == 0.6
    assert json.loads(sample.fields["votes"]) == {"billing": 3, "delivery": 1}
    split = [{"label": "billing"}, {"label": "delivery"}, {"label": "praise"}, "x", "y"]
    [low] = _run(recipe, {"text": "?"}, Scripted(lambda p, s: split))
    assert low.reject_reason and low.reject_reason.startswith("confidence_")
    [none] = _run(recipe, {"text": "?"}, Scripted(lambda p, s: ["nope"] * 5))
    assert none.stage == "parse"


def test_pseudo_label_logprob_mode_reads_each_labels_probability_and_falls_back_to_votes():
    recipe, _ = _recipe("pseudo_label", "recipe.mode=logprob", "recipe.n=4", "recipe.labels=[billing,delivery,praise]")
    probabilities = {"billing": 0.7, "delivery": 0.2, "praise": 0.1}
    engine = Scripted(
        lambda p, s: [{"label": "delivery"}] * 4,
        scores=lambda p, choices: {c: probabilities[json.loads(c)["label"]] for c in choices},
    )
    [sample] = _run(recipe, {"text": "refund please"}, engine)
    assert [call.get("choices") for call in engine.calls] == [[json.dumps({"label": x}) for x in probabilities]]
    fields = sample.fields
    assert (fields["label"], fields["confidence"], fields["confidence_source"]) == ("billing", 0.7, "logprob")
    assert json.loads(fields["distribution"]) == probabilities
    assert fields["entropy"] == pytest.approx(-sum(p * math.log(p) for p in probabilities.values()), abs=1e-4)
    assert sample.prompt_tokens == 30  # the scoring call is booked on the row
    # An engine that cannot score (an HTTP server without prompt log-probabilities): votes decide.
    [voted] = _run(recipe, {"text": "refund please"}, Scripted(lambda p, s: [{"label": "delivery"}] * 3 + ["x"]))
    assert (voted.fields["label"], voted.fields["confidence"]) == ("delivery", 0.75)
    assert voted.fields["confidence_source"] == "votes" and voted.fields["entropy"] == 0.0


def test_taxonomy_phase_one_generates_updates_per_batch_reviews_then_labels():
    recipe, _ = _recipe("taxonomy", "recipe.sample_size=6", "recipe.batch_size=2")
    steps = iter(
        [
            {"labels": [{"name": "billing", "description": "money"}, {"name": "bugs", "description": "errors"}]},
            {"labels": [{"name": "billing", "description": "money"}, {"name": "crashes", "description": "apps"}]},
            "not json",  # a failed update keeps the taxonomy it was given
            {"labels": [{"name": "payments", "description": "money"}, {"name": "crashes", "description": "apps"}]},
        ]
    )

    def answer(prompt, schema):
        if schema and "labels" in schema["properties"]:
            return next(steps)
        if schema:
            return {"label": "crashes"}
        return f"Summary of: {prompt.rsplit(':', 1)[-1].strip()}"

    engine = Scripted(answer)
    first = _run(recipe, {"text": "app crashes"}, engine)
    prompts = [call["prompt"] for call in engine.calls]
    second = _run(recipe, {"text": "charged twice"}, engine)
    assert len(prompts) == 6 + 1 + 2 + 1 + 1  # summaries, generate, an update per later batch, review, first label
    assert len(engine.calls) == len(prompts) + 1  # the second seed reuses the taxonomy
    generate, update, _, review = prompts[6:10]
    assert "- billing: money" not in generate and "- billing: money" in update  # the update sees the taxonomy so far
    assert "- crashes: apps" in review and "Summary of" not in review
    assert first[0].fields["label"] == second[0].fields["label"] == "crashes"
    stored = asyncio.run(recipe.state.values())["artifact/taxonomy"]
    assert [x["name"] for x in stored["labels"]] == ["payments", "crashes"]  # the review's version
    assert [(h["step"], h.get("kept", False)) for h in stored["history"]] == [
        ("generate", False),
        ("update", False),
        ("update", True),
        ("review", False),
    ]
    assert stored["sample_ids"] == [row["id"] for row in builtin_seeds("texts")[:6]]


@pytest.mark.parametrize("on_inconsistent", ["tie", "reject"])
def test_judge_pairwise_keeps_both_orders_and_flags_position_inconsistency(on_inconsistent):
    from generation.recipes.judge import Judge, combine
    from generation.roles import Engines

    assert combine("A", "B") == "A" and combine("B", "A") == "B"
    assert combine("A", "A") == "tie"  # the judge always picked the first position
    recipe, _ = _recipe("judge", "recipe.mode=pairwise", f"recipe.on_inconsistent={on_inconsistent}")
    judge = Scripted(lambda p, s: {"critique": f"critique of {p[:12]}", "winner": "A"})
    generator = Scripted(lambda p, s: pytest.fail("the generator must not judge when a judge is set"))
    [sample] = _run(recipe, builtin_seeds("answer_pairs")[0], Engines({"generator": generator, "judge": judge}))
    assert len(judge.calls) == 2 and judge.calls[0]["prompt"] != judge.calls[1]["prompt"]  # the answers swapped
    assert sample.fields["winner"] == "tie" and sample.fields["position_consistent"] is False
    assert len(sample.fields["critiques"]) == 2 and sample.fields["order_verdicts"] == ["A", "A"]
    assert (sample.reject_reason == "position_inconsistent") == (on_inconsistent == "reject")
    consistent = Scripted(
        lambda p, s: {"critique": "c", "winner": "A" if p.split("Answer A: ")[1].startswith("good") else "B"}
    )
    seed = {"instruction": "Pick.", "response_a": "good one", "response_b": "bad one"}
    [agreed] = _run(recipe, seed, consistent)
    assert agreed.fields["winner"] == "A" and agreed.fields["position_consistent"] is True and not agreed.reject_reason
    assert Judge.run_figures({"position_consistent": {"True": 3, "False": 1}}, {}) == {
        "position_consistency_rate": 0.75
    }
    single, _ = _recipe("judge")
    [bad] = _run(single, builtin_seeds("seed_tasks")[0], Scripted(lambda p, s: {"critique": "c", "score": 42}))
    assert bad.stage == "parse"
    with pytest.raises(ValueError, match=r"on_inconsistent 'maybe'; valid choices: \['tie', 'reject'\]"):
        _recipe("judge", "recipe.on_inconsistent=maybe")


def _critic_and_judge(revision: str, verdict_for_revision_first: str, verdict_for_draft_first: str):
    """Engines for critique_revise: a generator drafting "draft", a critic revising to ``revision``, a judge."""
    from generation.roles import Engines

    generator = Scripted(lambda p, s: "draft")
    critic = Scripted(lambda p, s: "the critique" if p.rstrip().endswith("brief.") else revision)

    def judged(prompt, schema):
        first = prompt.split("Answer A: ", 1)[1]
        winner = verdict_for_revision_first if first.startswith(revision) else verdict_for_draft_first
        return {"critique": "c", "winner": winner}

    judge = Scripted(judged)
    return Engines({"generator": generator, "critic": critic, "judge": judge}), generator, critic, judge


@pytest.mark.parametrize(
    "verdicts,judgment,reason,chosen",
    [
        (("A", "B"), "revision", None, "better"),
        (("B", "A"), "draft", "revision_worse_than_draft", "draft"),
        (("A", "A"), "tie", "judge_tie", "better"),
    ],
)
def test_critique_revise_drafts_with_the_generator_edits_with_the_critic_and_follows_the_judge(
    verdicts, judgment, reason, chosen
):
    recipe, _ = _recipe("critique_revise")
    engines, generator, critic, judge = _critic_and_judge("better", *verdicts)
    seed = {"instruction": "Summarise the memo.", "document": "The memo says the office moves in May."}
    [sample] = _run(recipe, seed, engines)
    assert len(generator.calls) == 1 and len(critic.calls) == 2 and len(judge.calls) == 2
    assert all("The memo says the office moves in May." in c["prompt"] for c in generator.calls + critic.calls)
    assert sample.fields["judgment"] == judgment and sample.reject_reason == reason
    assert sample.fields["chosen"] == chosen and {sample.fields["chosen"], sample.fields["rejected"]} == {
        "better",
        "draft",
    }
    assert set(sample.usage) == {"generator", "critic", "judge"}


def test_critique_revise_with_one_model_and_an_unchanged_revision():
    recipe, _ = _recipe("critique_revise")
    replies = iter(["draft", "critique", "draft"])
    engine = Scripted(lambda p, s: next(replies))
    [unchanged] = _run(recipe, {"instruction": "Do it."}, engine)
    assert unchanged.reject_reason == "revision_equals_draft" and len(engine.calls) == 3  # no judging call


@pytest.mark.parametrize("name", ["template", "augment", "critique_revise", "pseudo_label"])
def test_seed_text_reaches_the_model_literally(name):
    recipe, _ = _recipe(name)
    literal = "Keep ${oc.env:HOME} and {{ x }} and {instruction} as they are."
    engine = Scripted(lambda p, s: {"label": "billing"} if s else "ok")
    seed = {"instruction": literal, "output": "x", "text": literal}
    _run(recipe, seed, engine)
    assert any(literal in call["prompt"] for call in engine.calls), engine.calls[0]["prompt"]


def test_taxonomy_retries_its_first_step_and_names_the_failure():
    from generation.recipes.taxonomy import GENERATE_ATTEMPTS

    same = {"labels": [{"name": "Customers", "description": "a"}, {"name": "Customers", "description": "b"}]}
    good = {"labels": [{"name": "billing", "description": "money"}, {"name": "bugs", "description": "errors"}]}
    for answers, ok in (([same, same, good], True), ([same] * GENERATE_ATTEMPTS, False)):
        recipe, _ = _recipe("taxonomy", "recipe.sample_size=2", "recipe.batch_size=2")
        replies = iter(answers + [good])  # the review
        engine = Scripted(
            lambda p, s, r=replies: next(r) if s and "labels" in s["properties"] else {"label": "bugs"} if s else "x"
        )
        [sample] = _run(recipe, {"text": "app crashes"}, engine)
        assert (sample.error is None) == ok, sample.error
        if not ok:
            assert sample.stage == "taxonomy" and f"{GENERATE_ATTEMPTS} tries" in sample.error


def test_cascade_defers_below_the_threshold_and_its_cost_adds_up_from_per_role_tokens():
    from generation.roles import Engines
    from rayjobs.engines import role_figures

    recipe, _ = _recipe("cascade", "recipe.threshold=0.7")

    def planted(prompt, schema):  # the seed's instruction names the small model's confidence in its answer
        confidence = float(prompt.split()[0])
        return Completion(["42"], 10, 2, logprobs=[[math.log(confidence), math.log(confidence)]])

    large = Scripted(lambda p, s: Completion(["The answer is 42."], 20, 6, logprobs=[[-0.01] * 6]))
    engine = Engines({"generator": Scripted(planted), "large": large})
    seeds = [
        {"instruction": f"{c} What is 6 x 7?", "output": reference}
        for c, reference in ((0.95, "42"), (0.71, "41"), (0.69, "42"), (0.2, "#### 42"))
    ]
    samples = [s for seed in seeds for s in _run(recipe, seed, engine)]
    assert [s.fields["answered_by"] for s in samples] == ["small", "small", "large", "large"]
    assert [s.fields["small_confidence"] for s in samples] == [0.95, 0.71, 0.69, 0.2]
    assert [s.fields["correct"] for s in samples] == [True, False, True, True]
    assert samples[2].fields["large_confidence"] == pytest.approx(math.exp(-0.01), abs=1e-4)
    assert "large_confidence" not in samples[0].fields and len(large.calls) == 2

    total = Sample()  # every sample's calls booked on one: per-role sums
    for sample in samples:
        total.book(sample)
    used = total.usage
    models = {
        "generator": {"name": "small", "engine": "dry_run", "price_per_mtok": {"prompt": 1.0, "completion": 2.0}},
        "large": {"name": "large", "engine": "http", "price_per_mtok": {"prompt": 10.0, "completion": 20.0}},
    }
    tallies = {"answered_by": {"small": 2, "large": 2}, "correct": {"True": 3, "False": 1}}
    figures = recipe.run_figures(tallies, role_figures(models, used))["cascade"]
    # small: 4 calls × (10 + 2) tokens; large: 2 calls × (20 + 6)
    assert figures["deferral_rate"] == 0.5 and figures["accuracy"] == 0.75
    assert figures["cascade_tokens"] == 4 * 12 + 2 * 26 and figures["all_large_tokens"] == 26 * 4
    small_cost, large_cost = 4 * (10 * 1.0 + 2 * 2.0) / 1e6, 2 * (20 * 10.0 + 6 * 20.0) / 1e6
    assert figures["cascade_cost_usd"] == pytest.approx(small_cost + large_cost)
    assert figures["all_large_cost_usd"] == pytest.approx(large_cost / 2 * 4)


def test_cascade_without_log_probabilities_takes_the_agreement_of_n_samples():
    recipe, _ = _recipe("cascade", "recipe.threshold=0.7", "recipe.n=5")
    small = Scripted(lambda p, s: ["Paris", "paris.", "Lyon", "Paris", "Nice"])  # no log-probabilities
    [sample] = _run(recipe, {"instruction": "Capital of France?", "output": "Paris"}, small)
    assert sample.fields["confidence_from"] == "agreement" and sample.fields["small_confidence"] == 0.6
    assert sample.fields["answered_by"] == "large"  # the unset role is the generator, asked again
    [first, *rest] = small.calls
    assert first["n"] == 1 and [c["n"] for c in rest] == [5, 5]
    # The engine is known to give none now: no more calls asking for log-probabilities.
    [again] = _run(recipe, {"instruction": "Capital of France?"}, small)
    assert [c["n"] for c in small.calls[3:]] == [5, 5] and "correct" not in again.fields
    with pytest.raises(ValueError, match="recipe.confidence"):
        _recipe("cascade", "recipe.confidence=entropy")


def test_true_teacher_labels_each_summarizers_summary_with_the_teacher():
    from generation.roles import Engines

    recipe, _ = _recipe("true_teacher", "recipe.summarizers=[{name: small, role: generator}, {name: big, role: large}]")
    small = Scripted(lambda p, s: "A summary with an invented date.")
    big = Scripted(lambda p, s: "A faithful summary.")
    teacher = Scripted(lambda p, s: {"consistent": "faithful" in p})
    engine = Engines({"generator": small, "large": big, "teacher": teacher})
    samples = _run(recipe, {"text": "The bridge opened in 1932."}, engine)
    rows = {s.fields["summarizer"]: s for s in samples}
    assert rows["small"].fields["label"] == "inconsistent" and rows["big"].fields["label"] == "consistent"
    assert rows["big"].fields["summary"] == "A faithful summary." and rows["big"].fields["document"].endswith("1932.")
    assert [sorted(s.usage) for s in (rows["small"], rows["big"])] == [["generator", "teacher"], ["large", "teacher"]]
    assert len(teacher.calls) == 2 and all("1932" in c["prompt"] for c in teacher.calls)
    with pytest.raises(ValueError, match="distinct name"):
        _recipe("true_teacher", "recipe.summarizers=[{name: a}, {name: a}]")


def test_reverse_gen_keeps_the_instructions_the_target_fails_and_reports_the_failure_rate():
    from generation.roles import Engines

    recipe, _ = _recipe("reverse_gen", "recipe.prompts_per_seed=3")
    proposer = Scripted(lambda p, s: {"instructions": ["easy one", "hard one", "hard two", "extra"]})
    target = Scripted(lambda p, s: f"answer to {p}")
    judge = Scripted(lambda p, s: {"failed": "hard" in p, "reason": "wrong" if "hard" in p else "fine"})
    engine = Engines({"generator": proposer, "target": target, "judge": judge})
    samples = _run(recipe, {"instruction": "Add two numbers."}, engine)
    assert [s.fields["instruction"] for s in samples] == ["easy one", "hard one", "hard two"]  # capped at 3
    assert [s.reject_reason for s in samples] == ["target_succeeded", None, None]
    assert [s.fields["target_failed"] for s in samples] == [False, True, True]
    assert samples[1].fields["response"] == "answer to hard one" and len(target.calls) == 3
    assert recipe.run_figures({"target_failed": {"True": 2, "False": 1}}, {}) == {"target_failure_rate": 0.6667}
