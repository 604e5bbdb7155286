"""Document QA: questions per token-bounded chunk, answered from the chunk, kept only when the chunk supports them.

After GeMQuAD (Namboori et al., 2024) and long-span QA generation: long documents are cut into chunks of at most
``chunk_tokens`` tokens at sentence boundaries; the model writes questions about each chunk and answers each with
the chunk as context, quoting the ``evidence`` span it used. The span must occur in the chunk (compared after
normalising case, quotes, dashes and spaces): a small model's answers rarely match the chunk word for word, its
quotes can, so this check needs no model. A support check by the ``judge`` role (JSON-constrained) comes on top when
the run sets one (``support_check``). Answers failing either go to rejected/ with the reason.
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any, ClassVar

import pyarrow as pa

from generation.answers import normalised
from generation.engines import EngineClient
from generation.engines import check_sampling as valid_sampling  # `check_sampling` is also this recipe's parameter
from generation.recipes.base import Sample, StepFailed, attempt, configured, render, role, string_list, user

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
SUPPORT_SCHEMA = {"type": "object", "properties": {"supported": {"type": "boolean"}}, "required": ["supported"]}
# The evidence comes first: the model copies a sentence of the chunk, then answers from it (a 135M model's free
# answer often loops until max_tokens, and the JSON never closes). Lengths bound a loop the grammar can still close.
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "evidence": {"type": "string", "minLength": 1, "maxLength": 400},
        "answer": {"type": "string", "minLength": 1, "maxLength": 300},
    },
    "required": ["evidence", "answer"],
}
SUPPORT_CHECKS = ("auto", "always", "never")
MIN_EVIDENCE_WORDS = 3  # a quoted "the" proves nothing


def evidence_in(chunk: str, evidence: str) -> bool:
    span = normalised(evidence)
    return len(span.split()) >= MIN_EVIDENCE_WORDS and span in normalised(chunk)


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
    answer_prompt: ``{chunk}`` and ``{question}``; the model answers {"answer": ..., "evidence": <quoted span>}.
    check_prompt: ``{chunk}``, ``{question}`` and ``{answer}``; the judge answers {"supported": true|false}.
    support_check: ``auto`` (by the judge role when the run sets one), ``always`` (the generator judges when no
        judge is set) or ``never``; the evidence check always runs.
    question_sampling, answer_sampling, check_sampling: sampling per call.
    """

    name: ClassVar[str] = "doc_qa"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "chunk_index": pa.int32(),
        "chunk": pa.string(),
        "question": pa.string(),
        "answer": pa.string(),
        "evidence": pa.string(),
        "evidence_found": pa.bool_(),
        "supported": pa.bool_(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("question", "answer")
    export_map: ClassVar[dict[str, str]] = {"prompt": "question", "input": "chunk", "response": "answer"}
    required_fields: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self,
        question_prompt: str,
        answer_prompt: str,
        check_prompt: str,
        chunk_tokens: int = 512,
        questions_per_chunk: int = 2,
        support_check: str = "auto",
        question_sampling: dict | None = None,
        answer_sampling: dict | None = None,
        check_sampling: dict | None = None,
    ) -> None:
        if chunk_tokens < 16:
            raise ValueError(f"recipe.chunk_tokens must be >= 16, got {chunk_tokens}")
        if support_check not in SUPPORT_CHECKS:
            raise ValueError(f"unknown recipe.support_check {support_check!r}; valid choices: {list(SUPPORT_CHECKS)}")
        self.support_check = support_check
        self.chunk_tokens, self.questions_per_chunk = chunk_tokens, questions_per_chunk
        self.question_prompt, self.answer_prompt, self.check_prompt = question_prompt, answer_prompt, check_prompt
        self.question_sampling = valid_sampling(question_sampling)
        self.answer_sampling = valid_sampling(answer_sampling)
        self.check_sampling = valid_sampling(check_sampling)

    def _checker(self, engine: EngineClient) -> EngineClient | None:
        """Who checks support: the judge role, the generator standing in for it, or nobody."""
        if self.support_check == "never" or (self.support_check == "auto" and not configured(engine, "judge")):
            return None
        return role(engine, "judge")

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

        checker = self._checker(engine)

        async def answer_and_check(sample: Sample) -> Sample:
            question = sample.fields["question"]
            reply = await sample.ask_json(
                engine,
                user(render(self.answer_prompt, chunk=chunk, question=question)),
                ANSWER_SCHEMA,
                **self.answer_sampling,
            )
            answer, evidence = (str(reply.get(k) or "").strip() for k in ("answer", "evidence"))
            found = evidence_in(chunk, evidence)
            sample.fields.update(answer=answer, evidence=evidence, evidence_found=found)
            if not answer:
                raise StepFailed("parse", f"no answer in model output: {reply!r}"[:300])
            if not found:
                return sample.reject("evidence_not_in_chunk")
            if checker is None:
                return sample
            verdict = await sample.ask_json(
                checker,
                user(render(self.check_prompt, chunk=chunk, question=question, answer=answer)),
                SUPPORT_SCHEMA,
                **self.check_sampling,
            )
            supported = verdict.get("supported") is True
            sample.fields.update(supported=supported)
            return sample if supported else sample.reject("answer_not_supported_by_chunk")

        return list(await asyncio.gather(*(attempt(s, answer_and_check) for s in samples)))

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        chunks = chunk_text(seed["text"], self.chunk_tokens, engine.count_tokens)
        per_chunk = await asyncio.gather(*(self._chunk(i, c, engine) for i, c in enumerate(chunks)))
        return [s for samples in per_chunk for s in samples]
