"""Engines behind one client protocol (base.py): vLLM in this process, a dry run, an OpenAI-compatible server."""

from __future__ import annotations

from typing import Any

from generation.engines.base import (
    SAMPLING_KEYS,
    Completion,
    EngineClient,
    EngineUnavailable,
    Messages,
    check_sampling,
)
from generation.engines.dry_run import DryRunEngine

ENGINE_KINDS = ("dry_run", "vllm", "http")


def build_engine(model: dict[str, Any], seed: int = 0, budget: Any = None) -> EngineClient:
    """The engine a ``model`` config selects. ``budget``: the run-wide request budget of an HTTP engine."""
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
        from generation.engines.vllm import build_vllm

        return build_vllm(model, seed)
    if kind == "http":
        from generation.engines.http import HTTPEngine

        return HTTPEngine(model["name"], model.get("base_url"), **http_options(model), budget=budget, **sampling)
    raise ValueError(f"unknown model.engine {kind!r}; valid choices: {list(ENGINE_KINDS)}")


HTTP_OPTIONS = (
    "api_key_env",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "max_retries",
    "timeout_s",
)


def http_options(model: dict[str, Any]) -> dict[str, Any]:
    """The HTTP engine's own keys of a model config (unset ones left to the engine's defaults)."""
    return {k: model[k] for k in HTTP_OPTIONS if model.get(k) is not None}


__all__ = [
    "ENGINE_KINDS",
    "SAMPLING_KEYS",
    "Completion",
    "DryRunEngine",
    "EngineClient",
    "EngineUnavailable",
    "Messages",
    "build_engine",
    "check_sampling",
    "http_options",
]
