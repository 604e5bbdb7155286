"""Self-Instruct: bootstrap new instructions from in-context examples, keep only the novel ones, then answer them.

Wang et al., 2023, "Self-Instruct: Aligning Language Models with Self-Generated Instructions", §2. Each request
shows ``num_examples`` tasks, as in the paper 6 written by people (the seed's own and others from the task pool: by
default the run's corpus sample, i.e. the user's own tasks) and 2 the run generated and kept earlier, and asks for one
new task. The paper's key step is its filter (§2.3): a new instruction joins the task pool only when its ROUGE-L with
every instruction in the pool is below 0.7, and instructions a text model cannot act on (images, graphs, files...),
that are too short or too long, or that start with punctuation or a non-English character are dropped (the rules of
the paper's released code). Here an instruction that fails any of them is the recipe's own rejection
(``rejected_by=self_instruct``, the reason says which rule and, for ROUGE-L, the nearest pooled task), is never
answered and never joins the pool; one that passes joins the pool, then is answered in a second call.

The pool lives behind the run's shared state, so every engine actor checks against the same pool at once; a resumed
run rebuilds it from the committed rows (``restore_state``) before the engines start.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.novelty import rouge_l, rouge_l_bound, tokens
from generation.recipes.base import Sample, StepFailed, attempt, placeholders, render, user
from generation.state import SharedState

POOL = "self_instruct_pool"  # accepted generated instructions, drawn as the machine-written in-context examples
NOVELTY_POOL = "self_instruct_novelty"  # every pooled instruction (the task pool and accepted generations)
_PREFIX = re.compile(r"^\s*(?:(?:new\s+)?(?:task|instruction)\s*\d*\s*[:.\-)]|\d+\s*[.):\-]|[-*•])\s*", re.IGNORECASE)
# Words for what a text-only model cannot see or produce (the keyword list of the paper's released code).
BLOCKED_KEYWORDS = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
)


def parse_instruction(text: str) -> str | None:
    """The task in a model reply: the first line that is not a lead-in ("Here's a new task:"), with list
    numbering, a "Task:" label and wrapping quotes removed; None when the reply holds no such line."""
    lines = [_PREFIX.sub("", line).strip().strip("\"'`*").strip() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        if line.endswith(":") and i + 1 < len(lines):
            continue  # a lead-in; the task follows on the next line
        return line
    return None


def format_task(task: dict[str, Any]) -> str:
    text = str(task.get("instruction", "")).strip()
    extra = str(task.get("input") or "").strip()
    return f"{text}\nInput: {extra}" if extra else text


class SelfInstruct:
    """Args:
    num_examples: in-context tasks per request: the seed's own, ``machine_examples`` generated ones, the rest from
        the task pool.
    machine_examples: of those, how many are the run's own accepted generations (the paper: 2 of 8).
    samples_per_seed: new instructions generated per seed, each with a fresh draw of examples.
    pool: the task pool to start from (list of dicts with ``instruction``); None means the run's corpus sample.
    instruction_prompt: user message asking for a new task; ``{examples}`` is replaced by the numbered tasks; other
        ``{field}`` placeholders name seed fields (e.g. ``{domain}``), which every seed must then have.
    answer_system: system message for the answering call (empty for none).
    instruction_sampling, answer_sampling: sampling for the two calls.
    novelty_threshold: an instruction is kept only when its ROUGE-L with its seed's task and with every pooled
        instruction is below this (the paper: 0.7); null turns the check off.
    min_instruction_words, max_instruction_words: an instruction outside these bounds is rejected (the paper keeps
        more than 3 and at most 150 words).
    blocked_keywords: an instruction containing one of these words is rejected.
    pool_cap: most generated instructions kept for drawing machine-written examples.
    """

    name: ClassVar[str] = "self_instruct"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "instruction": pa.string(),
        "response": pa.string(),
        "context_ids": pa.list_(pa.string()),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("instruction", "response")
    export_map: ClassVar[dict[str, str]] = {"prompt": "instruction", "response": "response"}

    def __init__(
        self,
        num_examples: int = 8,
        machine_examples: int = 2,
        samples_per_seed: int = 1,
        pool: list[dict] | None = None,
        instruction_prompt: str = "Here are some tasks:\n{examples}\nWrite one new task.",
        answer_system: str = "",
        instruction_sampling: dict | None = None,
        answer_sampling: dict | None = None,
        novelty_threshold: float | None = 0.7,
        min_instruction_words: int = 4,
        max_instruction_words: int = 150,
        blocked_keywords: Sequence[str] = BLOCKED_KEYWORDS,
        pool_cap: int = 10_000,
    ) -> None:
        if num_examples < 1:
            raise ValueError(f"recipe.num_examples must be >= 1, got {num_examples}")
        if samples_per_seed < 1:
            raise ValueError(f"recipe.samples_per_seed must be >= 1, got {samples_per_seed}")
        if "{examples}" not in instruction_prompt:
            raise ValueError("recipe.instruction_prompt must contain the placeholder {examples}")
        if novelty_threshold is not None and not 0 < novelty_threshold <= 1:
            raise ValueError(f"recipe.novelty_threshold must be in (0, 1] or null, got {novelty_threshold}")
        self.num_examples = num_examples
        self.machine_examples = max(0, min(machine_examples, num_examples - 1))
        self.samples_per_seed = samples_per_seed
        self.min_words, self.max_words = min_instruction_words, max_instruction_words
        self.pool = self._tasks(pool) if pool is not None else []
        self.explicit_pool = pool is not None
        self.instruction_prompt = instruction_prompt
        self.seed_fields = tuple(f for f in placeholders(instruction_prompt) if f != "examples")
        self.required_fields = ("instruction", *self.seed_fields)
        self.answer_system = answer_system
        self.instruction_sampling = check_sampling(instruction_sampling)
        self.answer_sampling = check_sampling(answer_sampling)
        self.novelty_threshold = novelty_threshold
        words = "|".join(re.escape(k.lower()) for k in blocked_keywords)
        self.blocked = re.compile(rf"\b({words})\b") if words else None
        self.pool_cap = pool_cap
        self.state = SharedState()
        self._pool_started: asyncio.Future | None = None

    def bind_state(self, state: SharedState) -> None:
        """The task pool is shared by every engine actor of the run."""
        self.state, self._pool_started = state, None

    def bind_corpus(self, rows: list[dict[str, Any]]) -> None:
        """The task pool starts from the run's own tasks (an explicit ``recipe.pool`` is used instead)."""
        if not self.explicit_pool:
            self.pool = self._tasks(rows)

    def _tasks(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows usable as in-context tasks: an ``instruction`` string of a length this recipe would keep (one
        over-long task in the corpus would otherwise push every prompt it is drawn into over the context)."""
        return [
            dict(r)
            for r in rows
            if isinstance(r.get("instruction"), str) and 0 < len(r["instruction"].split()) <= self.max_words
        ]

    async def _start_pool(self) -> None:
        """The run's novelty pool, started once from the task pool (whichever actor asks first; later calls wait)."""
        if self._pool_started is None:
            texts = [(str(t.get("id") or f"pool:{i}"), t["instruction"]) for i, t in enumerate(self.pool)]
            self._pool_started = asyncio.ensure_future(
                self.state.start_novelty_pool(NOVELTY_POOL, texts, self.novelty_threshold)
            )
        await self._pool_started

    def examples_for(
        self, seed: dict[str, Any], rng: random.Random, generated: list[dict[str, Any]] = ()
    ) -> list[dict[str, Any]]:
        """The seed's own task, earlier generated instructions, and tasks from the pool for the rest."""
        others = [t for t in self.pool if t["instruction"] != seed.get("instruction")]
        drawn = rng.sample(others, min(len(others), self.num_examples - 1 - len(generated)))
        examples = [seed, *generated, *drawn]
        rng.shuffle(examples)  # the seed's position must not hint which task to imitate
        return examples

    def instruction_messages(self, examples: list[dict[str, Any]], seed: dict[str, Any]) -> list[dict[str, str]]:
        numbered = "\n".join(f"{i}. {format_task(t)}" for i, t in enumerate(examples, 1))
        fields = {f: seed[f] for f in self.seed_fields}
        return user(render(self.instruction_prompt, examples=numbered, **fields))

    def answer_messages(self, instruction: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.answer_system}] if self.answer_system else []
        return [*system, {"role": "user", "content": instruction}]

    def broken_rule(self, instruction: str) -> str | None:
        """Why the paper's filters drop ``instruction`` (its length, keywords, start), or None when none does."""
        words = len(instruction.split())
        if words < self.min_words:
            return f"too_short:{words}_words"
        if words > self.max_words:
            return f"too_long:{words}_words"
        found = self.blocked.search(instruction.lower()) if self.blocked else None
        if found:
            return f"keyword:{found.group(1)}"
        if instruction.lower().startswith("write a program"):
            return "asks_for_a_program"
        first = instruction[0]
        if not (first.isascii() and first.isalnum()):
            return "starts_with_punctuation" if first.isascii() else "starts_with_non_english"
        return None

    async def join_pool(self, instruction: str, seed: dict[str, Any]) -> str | None:
        """None when ``instruction`` is novel (it then joins the task pool and the machine-written examples), else
        why not: its ROUGE-L with its own seed's task or the nearest pooled instruction reaches the threshold."""
        example = {"id": generated_id(instruction), "instruction": instruction}
        if self.novelty_threshold is None:
            await self.state.extend(POOL, [example], self.pool_cap)
            return None
        words, task = tokens(instruction), tokens(str(seed.get("instruction", "")))
        own = rouge_l(words, task) if rouge_l_bound(len(words), len(task)) >= self.novelty_threshold else 0.0
        if own >= self.novelty_threshold:
            return f"rouge_l_{own:.2f}:seed_task"
        await self._start_pool()
        score, near = await self.state.offer_novel(
            NOVELTY_POOL, example["id"], instruction, also=(POOL, example, self.pool_cap)
        )
        return f"rouge_l_{score:.2f}:{near}" if score >= self.novelty_threshold else None

    async def _one(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> Sample:
        # As in the paper, some in-context examples are the run's own earlier generations: the pool grows.
        generated = await self.state.sample(POOL, self.machine_examples, rng.randrange(2**31))
        examples = self.examples_for(seed, rng, generated)
        sample = Sample({"context_ids": [str(t.get("id", "")) for t in examples]})

        async def steps(sample: Sample) -> Sample:
            asked = await sample.ask(engine, self.instruction_messages(examples, seed), **self.instruction_sampling)
            instruction = parse_instruction(asked.text)
            if instruction is None:
                raise StepFailed("parse", f"no instruction in model output: {asked.text[:200]!r}")
            sample.fields["instruction"] = instruction
            reason = self.broken_rule(instruction) or await self.join_pool(instruction, seed)
            if reason is not None:
                return sample.reject(reason)  # never answered, never in the pool
            answered = await sample.ask(engine, self.answer_messages(instruction), **self.answer_sampling)
            sample.fields["response"] = answered.text.strip()
            return sample

        return await attempt(sample, steps)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        # Fan out: all samples of a seed are in the engine's batch at once.
        return list(await asyncio.gather(*(self._one(seed, engine, rng) for _ in range(self.samples_per_seed))))

    async def restore_state(self, rows: list[dict[str, Any]]) -> None:
        """A resumed run's pool: every committed instruction that had joined it (kept, or dropped by a later
        filter, or whose answer failed), in commit order. Those this recipe rejected never joined."""
        joined = [
            {"id": generated_id(r["instruction"]), "instruction": r["instruction"]}
            for r in rows
            if r.get("instruction") and r.get("rejected_by") != self.name
        ]
        if joined:
            if self.novelty_threshold is not None:
                await self._start_pool()
                await self.state.add_to_novelty_pool(NOVELTY_POOL, [(t["id"], t["instruction"]) for t in joined])
            await self.state.extend(POOL, joined, self.pool_cap)


def generated_id(instruction: str) -> str:
    return "gen-" + hashlib.blake2b(instruction.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
