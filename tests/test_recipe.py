"""self_instruct prompt building and parsing, seed text kept literal, engine errors as values."""

from __future__ import annotations

import asyncio
import random

import pytest

from generation.engines import Completion, DryRunEngine
from generation.recipes import build_recipe
from generation.recipes.self_instruct import SelfInstruct, parse_instruction
from generation.seeds import builtin_seed_tasks


def test_builtin_seed_set_has_at_least_20_distinct_tasks():
    tasks = builtin_seed_tasks()
    assert len(tasks) >= 20
    assert len({t["id"] for t in tasks}) == len(tasks)
    assert all(t["instruction"].strip() and "output" in t for t in tasks)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Write a poem about the sea.", "Write a poem about the sea."),
        ("Task 4: Describe how rain forms.\nMore text", "Describe how rain forms."),
        ("  \n4. List three uses of copper.", "List three uses of copper."),
        ('New task: "Explain photosynthesis simply."', "Explain photosynthesis simply."),
        ("- Name two rivers in Africa.", "Name two rivers in Africa."),
        ("Here's a new task for you:\n\nPlan a picnic menu for six.", "Plan a picnic menu for six."),
        ("Hi.", "Hi."),  # too short for the paper's rules, but an instruction: the recipe rejects it, not the parser
        ("", None),
        (" \n ", None),
    ],
)
def test_parse_instruction(raw, expected):
    assert parse_instruction(raw) == expected


def test_examples_include_the_seed_and_are_deterministic_per_rng():
    recipe = SelfInstruct(num_examples=4, pool=list(builtin_seed_tasks()))
    seed = dict(builtin_seed_tasks()[0])
    first = recipe.examples_for(seed, random.Random("s"))
    again = recipe.examples_for(seed, random.Random("s"))
    assert first == again and len(first) == 4
    assert sum(t["id"] == seed["id"] for t in first) == 1


def test_seed_text_is_never_rendered_as_a_template():
    recipe = SelfInstruct(num_examples=1)
    seed = {"id": "x", "instruction": "Print ${oc.env:HOME} and {examples} and {{ x }} literally."}
    [message] = recipe.instruction_messages(recipe.examples_for(seed, random.Random(0)), seed)
    assert "Print ${oc.env:HOME} and {examples} and {{ x }} literally." in message["content"]


def test_prompt_shows_numbered_examples_with_inputs():
    recipe = SelfInstruct(num_examples=2, pool=[{"id": "a", "instruction": "Add the numbers.", "input": "2 and 3"}])
    seed = {"id": "s", "instruction": "Say hi."}
    [message] = recipe.instruction_messages(recipe.examples_for(seed, random.Random(1)), seed)
    assert "Add the numbers.\nInput: 2 and 3" in message["content"]
    assert "1. " in message["content"] and "2. " in message["content"]


def test_run_with_dry_engine_emits_instruction_response_and_tokens():
    recipe = build_recipe({"name": "self_instruct", "samples_per_seed": 3, "num_examples": 3})
    recipe.bind_corpus(list(builtin_seed_tasks()))
    samples = asyncio.run(recipe.run(dict(builtin_seed_tasks()[1]), DryRunEngine(), random.Random(0)))
    assert len(samples) == 3
    for s in samples:
        assert s.error is None and s.fields["instruction"] and s.fields["response"]
        assert s.prompt_tokens > 0 and s.completion_tokens > 0 and len(s.fields["context_ids"]) == 3


class _Failing:
    model_name = "failing"

    async def chat(self, messages, **kw):
        return Completion(error="prompt too long")


def test_engine_error_becomes_a_failed_sample_not_an_exception():
    recipe = SelfInstruct()
    [sample] = asyncio.run(recipe.run({"id": "s", "instruction": "Do it."}, _Failing(), random.Random(0)))
    assert sample.error == "prompt too long" and sample.stage == "engine"


def test_bad_parameters_name_the_key():
    with pytest.raises(ValueError, match="recipe.samples_per_seed"):
        SelfInstruct(samples_per_seed=0)
    with pytest.raises(ValueError, match="unknown recipe 'nope'.*self_instruct"):
        build_recipe({"name": "nope"})
    with pytest.raises(ValueError, match="bad parameters for recipe 'self_instruct'"):
        build_recipe({"name": "self_instruct", "bogus": 1})


def test_dry_engine_is_deterministic_and_honours_n_and_schema():
    engine = DryRunEngine()
    a = asyncio.run(engine.generate("hello", n=2))
    b = asyncio.run(engine.generate("hello", n=2))
    assert a == b and len(a.texts) == 2 and a.texts[0] != a.texts[1]
    js = asyncio.run(engine.generate("x", json_schema={"type": "object", "properties": {"k": {"type": "string"}}}))
    assert js.text.startswith('{"k":')
    assert not asyncio.run(DryRunEngine(max_model_len=3).generate("one two three four")).ok
    with pytest.raises(ValueError, match="temprature"):
        asyncio.run(engine.generate("x", temprature=1.0))


def test_template_fills_placeholders_once_and_emits_n_samples():
    from generation.recipes.base import render
    from generation.recipes.template import Template

    assert render("Q: {instruction}", instruction="say {missing} ${oc.env:HOME}") == "Q: say {missing} ${oc.env:HOME}"
    with pytest.raises(ValueError, match="names {missing}"):
        render("{missing}", instruction="x")
    messages = [{"role": "user", "content": "Answer: {instruction}"}]
    recipe = build_recipe({"name": "template", "messages": messages, "n": 3, "output": "answer"})
    assert isinstance(recipe, Template) and recipe.required_fields == ("instruction",)
    samples = asyncio.run(recipe.run({"instruction": "why?"}, DryRunEngine(), random.Random(0)))
    assert len(samples) == 3 and all(s.fields["answer"] for s in samples)
    with pytest.raises(ValueError, match="recipe.messages"):
        Template(messages=[{"role": "user"}])


def test_dead_engine_fails_the_batch_instead_of_blaming_seeds():
    import pyarrow as pa

    from generation.actor import GenerateActor
    from generation.engines import EngineUnavailable
    from rayjobs.rows import SEED_SCHEMA, row_schema

    class _Dead:
        model_name = "dead"

        async def chat(self, messages, **kw):
            raise EngineUnavailable("engine died")

        def shutdown(self):
            pass

    actor = GenerateActor(
        model={"engine": "dry_run", "name": "x"},
        recipe={"name": "self_instruct"},
        run_name="r",
        run_seed=0,
        schema=row_schema(SelfInstruct.columns),
    )
    actor.engine = _Dead()
    seeds = pa.table([["a"], ['{"instruction": "Say hi to me."}'], [""]], schema=SEED_SCHEMA)
    with pytest.raises(EngineUnavailable):
        asyncio.run(actor(seeds))


def test_the_corpus_becomes_the_task_pool_without_over_long_or_empty_tasks():
    recipe = SelfInstruct(num_examples=8)
    long_task = {"id": "long", "instruction": "lighthouse " * 6000}
    recipe.bind_corpus([{"id": "a", "instruction": "Name two rivers in Asia."}, long_task, {"id": "b", "text": "x"}])
    assert [t["id"] for t in recipe.pool] == [
        "a"
    ]  # an over-long task would push every prompt it joins past the context
    explicit = SelfInstruct(pool=[{"instruction": "Say hi to a friend."}])
    explicit.bind_corpus([{"id": "a", "instruction": "Name two rivers in Asia."}])
    assert [t["instruction"] for t in explicit.pool] == ["Say hi to a friend."]  # recipe.pool wins over the corpus
