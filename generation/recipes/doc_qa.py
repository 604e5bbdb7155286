"""Document QA: questions per token-bounded chunk, answered from the chunk, kept only when the chunk supports them.

After GeMQuAD (Namboori et al., 2024) and long-span QA generation: long documents are cut into chunks of at most
``chunk_tokens`` tokens at sentence boundaries; the model writes questions about each chunk, answers each with the
chunk as context, then checks (JSON-constrained) whether the chunk supports the answer. Unsupported answers go to
rejected/ with the reason.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient
from generation.engines import check_sampling as valid_sampling  # `check_sampling` is also this recipe's parameter
from generation.recipes.base import Sample, StepFailed, attempt, render, string_list, user

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
SUPPORT_SCHEMA = {"type": "object", "properties": {"supported": {"type": "boolean"}}, "required": ["supported"]}


def chunk_text(text: str, max_tokens: int, count_tokens) -> list[str]:
    """Sentences packed greedily into chunks of at most ``max_tokens`` (a longer sentence is a chunk alone)."""
    chunks, current, used = [], [], 0
    for sentence in _SENTENCE_END.split(text.strip()):
        size = count_tokens(sentence)
        if current and used + size > max_tokens:
            chunks.append(" ".join(current))
            current, used = [], 0
        current.append(sentence)
        used += size
    if current:
        chunks.append(" ".join(current))
    return chunks


class DocQA:
    """Args:
    chunk_tokens: most tokens per chunk.
    questions_per_chunk: questions asked per chunk (the schema allows up to 5).
    question_prompt: ``{chunk}`` and ``{count}``.
    answer_prompt: ``{chunk}`` and ``{question}``.
    check_prompt: ``{chunk}``, ``{question}`` and ``{answer}``; the model answers {"supported": true|false}.
    question_sampling, answer_sampling, check_sampling: sampling per call.
    """

    name: ClassVar[str] = "doc_qa"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "chunk_index": pa.int32(),
        "chunk": pa.string(),
        "question": pa.string(),
        "answer": pa.string(),
        "supported": pa.bool_(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("question", "answer")
    required_fields: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self,
        question_prompt: str,
        answer_prompt: str,
        check_prompt: str,
        chunk_tokens: int = 256,
        questions_per_chunk: int = 2,
        question_sampling: dict | None = None,
        answer_sampling: dict | None = None,
        check_sampling: dict | None = None,
    ) -> None:
        if chunk_tokens < 16:
            raise ValueError(f"recipe.chunk_tokens must be >= 16, got {chunk_tokens}")
        self.chunk_tokens, self.questions_per_chunk = chunk_tokens, questions_per_chunk
        self.question_prompt, self.answer_prompt, self.check_prompt = question_prompt, answer_prompt, check_prompt
        self.question_sampling = valid_sampling(question_sampling)
        self.answer_sampling = valid_sampling(answer_sampling)
        self.check_sampling = valid_sampling(check_sampling)

    async def _chunk(self, index: int, chunk: str, engine: EngineClient) -> list[Sample]:
        asking = Sample({"chunk_index": index, "chunk": chunk})
        try:
            value = await asking.ask_json(
                engine,
                user(render(self.question_prompt, chunk=chunk, count=self.questions_per_chunk)),
                string_list("questions", self.questions_per_chunk),
                **self.question_sampling,
            )
        except StepFailed as failed:
            return [asking.fail(failed.stage, failed.error)]
        questions = [q.strip() for q in value.get("questions", []) if isinstance(q, str) and q.strip()]
        questions = list(dict.fromkeys(questions))[: self.questions_per_chunk]
        if not questions:
            return [asking.fail("parse", f"no questions for chunk {index}: {value!r}"[:300])]
        samples = asking.fan_out([{"question": q} for q in questions])

        async def answer_and_check(sample: Sample) -> Sample:
            question = sample.fields["question"]
            answer = (
                await sample.ask(
                    engine, user(render(self.answer_prompt, chunk=chunk, question=question)), **self.answer_sampling
                )
            ).text.strip()
            verdict = await sample.ask_json(
                engine,
                user(render(self.check_prompt, chunk=chunk, question=question, answer=answer)),
                SUPPORT_SCHEMA,
                **self.check_sampling,
            )
            supported = bool(verdict.get("supported")) if isinstance(verdict, dict) else False
            sample.fields.update(answer=answer, supported=supported)
            return sample if supported else sample.reject("answer_not_supported_by_chunk")

        return list(await asyncio.gather(*(attempt(s, answer_and_check) for s in samples)))

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        chunks = chunk_text(seed["text"], self.chunk_tokens, engine.count_tokens)
        per_chunk = await asyncio.gather(*(self._chunk(i, c, engine) for i, c in enumerate(chunks)))
        return [s for samples in per_chunk for s in samples]
