"""Self-Instruct: bootstrap new instructions from in-context examples, then answer them.

Wang et al., 2023, "Self-Instruct: Aligning Language Models with Self-Generated Instructions". Each request shows
``num_examples`` tasks (the seed's own plus others drawn from the pool) and asks for one new task; the model then
answers the new task in a second call.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from typing import Any, ClassVar

import pyarrow as pa

from generation.engine import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, user
from generation.seeds import builtin_seed_tasks
from generation.state import SharedState

POOL = "self_instruct_pool"
_PREFIX = re.compile(r"^\s*(?:(?:new\s+)?(?:task|instruction)\s*\d*\s*[:.\-)]|\d+\s*[.):\-]|[-*•])\s*", re.IGNORECASE)


def parse_instruction(text: str, min_words: int = 3) -> str | None:
    """The task in a model reply: the first line that is not a lead-in ("Here's a new task:"), with list
    numbering, a "Task:" label and wrapping quotes removed; None when no line has ``min_words`` words."""
    lines = [_PREFIX.sub("", line).strip().strip("\"'`*").strip() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        if line.endswith(":") and i + 1 < len(lines):
            continue  # a lead-in; the task follows on the next line
        return line if len(line.split()) >= min_words else None
    return None


def format_task(task: dict[str, Any]) -> str:
    text = str(task.get("instruction", "")).strip()
    extra = str(task.get("input") or "").strip()
    return f"{text}\nInput: {extra}" if extra else text


class SelfInstruct:
    """Args:
    num_examples: in-context tasks per request: the seed's own task plus ``num_examples - 1`` from the pool.
    samples_per_seed: new instructions generated per seed, each with a fresh draw of examples.
    pool: tasks the in-context examples are drawn from (list of dicts); None means the built-in seed tasks.
    instruction_prompt: user message asking for a new task; ``{examples}`` is replaced by the numbered tasks.
    answer_system: system message for the answering call (empty for none).
    instruction_sampling: sampling for the instruction call.
    answer_sampling: sampling for the answer call.
    min_instruction_words: a parsed instruction with fewer words is an unparsable output.
    """

    name: ClassVar[str] = "self_instruct"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "instruction": pa.string(),
        "response": pa.string(),
        "context_ids": pa.list_(pa.string()),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("instruction", "response")
    required_fields: ClassVar[tuple[str, ...]] = ("instruction",)

    def __init__(
        self,
        num_examples: int = 3,
        samples_per_seed: int = 1,
        pool: list[dict] | None = None,
        instruction_prompt: str = "Here are some tasks:\n{examples}\nWrite one new task.",
        answer_system: str = "",
        instruction_sampling: dict | None = None,
        answer_sampling: dict | None = None,
        min_instruction_words: int = 3,
        machine_examples: int = 1,
        pool_cap: int = 10_000,
    ) -> None:
        if num_examples < 1:
            raise ValueError(f"recipe.num_examples must be >= 1, got {num_examples}")
        if samples_per_seed < 1:
            raise ValueError(f"recipe.samples_per_seed must be >= 1, got {samples_per_seed}")
        if "{examples}" not in instruction_prompt:
            raise ValueError("recipe.instruction_prompt must contain the placeholder {examples}")
        self.num_examples = num_examples
        self.samples_per_seed = samples_per_seed
        self.pool = list(pool) if pool is not None else list(builtin_seed_tasks())
        self.instruction_prompt = instruction_prompt
        self.answer_system = answer_system
        self.instruction_sampling = check_sampling(instruction_sampling)
        self.answer_sampling = check_sampling(answer_sampling)
        self.min_instruction_words = min_instruction_words
        self.machine_examples = max(0, min(machine_examples, num_examples - 1))
        self.pool_cap = pool_cap
        self.state = SharedState()

    def bind_state(self, state: SharedState) -> None:
        """The pool of generated instructions is shared by every engine actor of the run."""
        self.state = state

    def examples_for(
        self, seed: dict[str, Any], rng: random.Random, generated: list[dict[str, Any]] = ()
    ) -> list[dict[str, Any]]:
        """The seed's own task, earlier generated instructions, and human tasks from the pool for the rest."""
        others = [t for t in self.pool if t.get("id") != seed.get("id") and t.get("instruction")]
        drawn = rng.sample(others, min(len(others), self.num_examples - 1 - len(generated)))
        examples = [seed, *generated, *drawn]
        rng.shuffle(examples)  # the seed's position must not hint which task to imitate
        return examples

    def instruction_messages(self, examples: list[dict[str, Any]]) -> list[dict[str, str]]:
        numbered = "\n".join(f"{i}. {format_task(t)}" for i, t in enumerate(examples, 1))
        return user(render(self.instruction_prompt, examples=numbered))

    def answer_messages(self, instruction: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.answer_system}] if self.answer_system else []
        return [*system, {"role": "user", "content": instruction}]

    async def _one(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> Sample:
        # As in the paper, some in-context examples are the run's own earlier generations: the pool grows.
        generated = await self.state.sample(POOL, self.machine_examples, rng.randrange(2**31))
        examples = self.examples_for(seed, rng, generated)
        sample = Sample({"context_ids": [str(t.get("id", "")) for t in examples]})

        async def steps(sample: Sample) -> Sample:
            asked = await sample.ask(engine, self.instruction_messages(examples), **self.instruction_sampling)
            instruction = parse_instruction(asked.text, self.min_instruction_words)
            if instruction is None:
                raise StepFailed("parse", f"no usable instruction in model output: {asked.text[:200]!r}")
            key = hashlib.blake2b(instruction.encode(), digest_size=6).hexdigest()
            await self.state.extend(POOL, [{"id": f"gen-{key}", "instruction": instruction}], self.pool_cap)
            answered = await sample.ask(engine, self.answer_messages(instruction), **self.answer_sampling)
            sample.fields.update(instruction=instruction, response=answered.text.strip())
            return sample

        return await attempt(sample, steps)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        # Fan out: all samples of a seed are in the engine's batch at once.
        return list(await asyncio.gather(*(self._one(seed, engine, rng) for _ in range(self.samples_per_seed))))
