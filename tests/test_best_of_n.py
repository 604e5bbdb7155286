"""Best-of-n: candidates per seed (generation/best_of_n.py) and the choice among them (filtering/best_of_n.py)."""

from __future__ import annotations

import asyncio
import json
import random
import re

import pytest

from filtering.best_of_n import BestOfNFilter, distinct_ratio
from generation.recipes import build_recipe
from rayjobs.pipeline import run
from rayjobs.sink import Sink
from tests.conftest import make_config, write_jsonl
from tests.test_recipes import Scripted

TASKS = [
    "Explain how volcanoes form beneath oceanic plates.",
    "Draft a polite email declining a wedding invitation.",
    "List five vegetables that grow well in shade.",
    "Compose a limerick featuring a forgetful octopus.",
    "Describe the rules of chess castling precisely.",
    "Suggest budget meals for a student's week.",
]
CANDIDATES = [  # one seed, one group: planted texts and scores
    {"text": "short answer here", "classifier_score": 0.9, "judge_score": 4.0},
    {"text": "a much longer answer with many many many words in it", "classifier_score": 0.1, "judge_score": 9.0},
    {"text": "a medium answer with six words", "classifier_score": 0.5, "judge_score": 6.0},
]


def _rows(candidates=CANDIDATES, seed="s1", group=0):
    return [
        {"seed_id": seed, "candidate_group": group, "sample_index": i, "response": c["text"], **c}
        for i, c in enumerate(candidates)
    ]


def _kept(filt, rows):
    return [i for i, (keep, _) in enumerate(filt.keep_batch(rows)) if keep]


@pytest.mark.parametrize(
    "params, best",
    [
        ({"objective": "length"}, 1),
        ({"objective": "length", "length_target": 6}, 2),
        ({"objective": "length", "length_target": 2}, 0),
        ({"objective": "distinct_n"}, 0),  # 3 words: 2 bigrams, both distinct; the long one repeats "many many"
        ({"objective": "classifier", "classifier": "max"}, 0),
        ({"objective": "classifier", "classifier": "min"}, 1),
        ({"objective": "judge"}, 1),
        ({"objective": {"classifier": 1.0, "judge": 0.2}}, 0),
        ({"objective": {"classifier": 0.2, "judge": 1.0}}, 1),
    ],
)
def test_the_objective_keeps_the_argmax_of_its_planted_scores(params, best):
    rows = _rows()
    verdicts = BestOfNFilter(field="response", **params).keep_batch(rows)
    assert [keep for keep, _ in verdicts] == [i == best for i in range(3)]
    assert all(why.startswith("not_best: score ") for keep, why in verdicts if not keep)
    assert max(rows, key=lambda r: r["best_of_n_score"]) is rows[best]


def test_groups_are_judged_apart_and_pairs_are_oriented_by_score():
    rows = _rows() + _rows(seed="s1", group=1)[:2] + _rows(seed="s2")
    kept = _kept(BestOfNFilter(field="response", objective="judge", pairs=True), rows)
    assert kept == [1, 4, 6]  # one per (seed, group)
    for i in kept:
        row = rows[i]
        assert row["chosen"] == row["response"] and row["pair_margin"] > 0
    assert rows[1]["rejected"] == CANDIDATES[0]["text"] and rows[1]["pair_margin"] == 5.0
    assert distinct_ratio("a a a", 2) == 0.5 and distinct_ratio("one", 2) == 0.0


def test_a_judge_tie_between_best_and_worst_makes_no_pair():
    tied = [{**c, "judge_score": 7.0} for c in CANDIDATES]
    rows = _rows(tied)
    assert _kept(BestOfNFilter(field="response", objective="judge", pairs=True), rows) == [0]  # first on a tie
    assert "chosen" not in rows[0] and "pair_margin" not in rows[0]


def test_the_classifier_objective_reads_the_classifier_steps_score(tiny_classifier):
    from filtering.classifier import ClassifierFilter

    rows = _rows([{"text": t} for t in ("good text", "bad bad text", "the good the", "bad")])
    ClassifierFilter(model=tiny_classifier, label="toxic", max_score=1.0, device="cpu", fields=["response"]).keep_batch(
        rows
    )
    scores = [r["classifier_score"] for r in rows]
    assert len(set(scores)) == 4
    assert _kept(BestOfNFilter(field="response", objective="classifier"), rows) == [scores.index(max(scores))]
    assert _kept(BestOfNFilter(field="response", objective="classifier", classifier="min"), rows) == [
        scores.index(min(scores))
    ]


def test_each_candidate_runs_with_its_own_generator_and_the_judge_scores_it():
    config = make_config(
        ["recipe=self_instruct", "model=dry_run", "recipe.best_of_n.n=3", "recipe.best_of_n.objective=judge"]
    )
    recipe = build_recipe(config["recipe"])
    recipe.bind_corpus([{"instruction": f"Seed task number {i} about something."} for i in range(20)])
    calls = {"n": 0}

    def answer(prompt, schema):
        if prompt.startswith("Rate how well"):  # the judge: the score is the candidate's planted number
            return {"score": int(re.search(r"answer (\d+)", prompt).group(1)) % 10 + 1}
        calls["n"] += 1
        if prompt.startswith("Here are some example tasks"):  # lexically apart: self_instruct's novelty keeps all
            return TASKS[calls["n"] % len(TASKS)]
        return f"answer {calls['n']} is a long enough reply about rivers and their deltas."

    engine = Scripted(answer)
    samples = asyncio.run(recipe.run({"instruction": "Name a river."}, engine, random.Random(0)))
    oks = [s for s in samples if s.error is None and s.reject_reason is None]
    groups = {}
    for s in oks:
        groups.setdefault(s.fields["candidate_group"], []).append(s)
    assert groups and all(len(members) == 3 for members in groups.values())
    assert all(s.fields["judge_score"] == int(s.fields["response"].split()[1]) % 10 + 1 for s in oks)
    firsts = [c["prompt"] for c in engine.calls if c["prompt"].startswith("Here are some example tasks")]
    assert len(firsts) == 3 * len(groups) == len(set(firsts))  # each candidate drew its own in-context examples


def test_bad_best_of_n_settings_name_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"objective.*valid choices.*length"):
        build_recipe(make_config(["recipe.best_of_n.n=2", "recipe.best_of_n.objective=shortest"])["recipe"])
    with pytest.raises(ValueError, match="best_of_n.field 'answer' is not a column"):
        build_recipe(make_config(["recipe.best_of_n.n=2", "recipe.best_of_n.field=answer"])["recipe"])
    with pytest.raises(ValueError, match="writes its own chosen/rejected"):
        build_recipe(
            make_config(["recipe=critique_revise", "recipe.best_of_n.n=2", "recipe.best_of_n.pairs=true"])["recipe"]
        )


def test_a_best_of_n_run_keeps_one_candidate_per_group_and_writes_pairs(ray_session, dry_config, tmp_path):
    seeds = write_jsonl(
        tmp_path / "seeds.jsonl", [{"id": f"s{i}", "instruction": f"Name river {i}."} for i in range(4)]
    )
    config = dry_config(
        "recipe=self_instruct",
        "source=jsonl",
        f"source.uri={seeds}",
        "recipe.machine_examples=0",
        "recipe.best_of_n.n=3",
        "recipe.best_of_n.pairs=true",
        "filters=none",
    )
    result = run(config)
    sink = Sink(config["sink"]["uri"])
    data = sink.read_kind("data").to_pylist()
    rejected = [r for r in sink.read_kind("rejected").to_pylist() if r["rejected_by"] == "best_of_n"]
    groups = {(r["seed_id"], r["candidate_group"]) for r in data}
    assert len(groups) == len(data)  # one kept candidate per (seed, group)
    assert all(r["reject_reason"].startswith("not_best") for r in rejected)
    for row in data:
        rivals = [
            r for r in rejected if (r["seed_id"], r["candidate_group"]) == (row["seed_id"], row["candidate_group"])
        ]
        assert all(row["best_of_n_score"] >= r["best_of_n_score"] for r in rivals)
        if row["chosen"] is not None:
            assert row["chosen"] == row["response"] and row["pair_margin"] > 0
            assert row["rejected"] in {r["response"] for r in rivals}
    assert any(row["chosen"] is not None for row in data)
    funnel = {f["step"]: f for f in result.summary["filters"]}
    assert funnel["best_of_n"]["dropped"] == len(rejected) > 0
    assert json.loads(sink.read_text("run.json"))["config"]["recipe"]["best_of_n"]["n"] == 3
