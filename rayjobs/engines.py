"""The run's engines by role: their checks before Ray starts, where their run-wide budgets live, what they cost.

Every role's engine runs inside the generate actors (vLLM or dry run in process, HTTP as a client); an HTTP engine's
in-flight and rate budgets are one ``RequestBudget`` actor per distinct config, shared by every generate actor.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import ray

from generation.engines import ENGINE_KINDS, check_sampling, http_options
from generation.engines.budget import RequestBudget
from generation.engines.http import HTTPEngine, Refused, Transient, check_base_url
from generation.roles import GENERATOR, model_key, role_models
from rayjobs.redact import keep_secret_env

PRICE_KEYS = ("prompt", "completion")


def check_roles(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Role → model config, each checked (engine kind, sampling, HTTP keys, prices); the API key variables they
    name are scrubbed from every text synthray writes from now on."""
    models = role_models(config["model"], config.get("engines"))
    for role, model in models.items():
        where = "model" if role == GENERATOR else f"engines.{role}"
        if model.get("engine") not in ENGINE_KINDS:
            raise ValueError(f"unknown {where}.engine {model.get('engine')!r}; valid choices: {list(ENGINE_KINDS)}")
        try:
            check_sampling(model.get("sampling"))
        except ValueError as exc:
            raise ValueError(f"{where}.sampling: {exc}") from exc
        price = model.get("price_per_mtok") or {}
        bad = {k: v for k, v in price.items() if k not in PRICE_KEYS or not isinstance(v, int | float) or v < 0}
        if bad:
            raise ValueError(
                f"{where}.price_per_mtok {bad} is not a price: keys {list(PRICE_KEYS)}, non-negative USD per million"
            )
        if model["engine"] == "http":
            try:
                check_base_url(model.get("base_url"))
                RequestBudget(
                    model.get("max_concurrency", 32), model.get("requests_per_minute"), model.get("tokens_per_minute")
                )
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from exc
            if model.get("api_key_env"):
                keep_secret_env(model["api_key_env"])
    return models


def http_models(models: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Model key → config of each distinct HTTP engine among the roles."""
    return {model_key(m): m for m in models.values() if m.get("engine") == "http"}


def check_servers(models: Mapping[str, dict[str, Any]]) -> None:
    """Each HTTP role's server answers, takes the key and serves the model, before any seed is read: a wrong key or
    model name fails the run in seconds, naming the variable (never its value) or the models the server has."""
    for model in http_models(models).values():
        engine = HTTPEngine(model["name"], model["base_url"], **http_options(model))
        try:
            served = asyncio.run(_listed(engine))
        except Refused as refused:
            if refused.status in (401, 403):
                raise ValueError(
                    f"{model['base_url']} refused the API key from environment variable {engine.api_key_env} "
                    f"(which {'is' if os.environ.get(engine.api_key_env) else 'is not'} set): HTTP {refused.status}"
                ) from None
            continue  # a server without GET /models (some proxies) is checked by the run's first call instead
        except Transient as failed:
            raise ValueError(
                f"no answer from {model['base_url']} after {engine.max_retries} retries ({failed}): is the server up?"
            ) from None
        if served and model["name"] not in served:
            raise ValueError(f"{model['base_url']} does not serve model {model['name']!r}; it serves {served}")


async def _listed(engine: HTTPEngine) -> list[str]:
    try:
        return await engine.models()
    finally:
        await engine.aclose()


def start_budgets(models: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Model key → a ``RequestBudget`` actor per distinct HTTP engine (no CPU held: it only counts)."""
    budget = ray.remote(RequestBudget).options(num_cpus=0, max_concurrency=100_000)
    return {
        key: budget.remote(
            model.get("max_concurrency", 32), model.get("requests_per_minute"), model.get("tokens_per_minute")
        )
        for key, model in http_models(models).items()
    }


def secrets(models: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """Variable → value of the API keys the HTTP roles name, from the driver's environment."""
    names = {m.get("api_key_env") for m in http_models(models).values()} - {None, ""}
    return {name: os.environ[name] for name in sorted(names) if os.environ.get(name)}


def role_figures(models: Mapping[str, dict[str, Any]], used: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Per role: its model, engine, calls, tokens, errors, retries, seconds and cost (USD, when priced). A role a
    recipe asks for that the run does not configure is served by the generator's model."""
    figures = {}
    for role in sorted(set(models) | set(used), key=lambda r: (r != GENERATOR, r)):
        model = models.get(role, models[GENERATOR])
        row = {"model": model["name"], "engine": model["engine"]}
        counts = used.get(role, {})
        for key in ("calls", "prompt_tokens", "completion_tokens", "errors", "retries"):
            row[key] = int(counts.get(key, 0))
        for key in ("cache_hits", "cached_prompt_tokens", "cached_completion_tokens"):
            if counts.get(key):
                row[key] = int(counts[key])
        row["seconds"] = round(float(counts.get("seconds", 0.0)), 3)
        price = model.get("price_per_mtok") or {}
        if price:
            row["cost_usd"] = round(
                (row["prompt_tokens"] * price.get("prompt", 0) + row["completion_tokens"] * price.get("completion", 0))
                / 1e6,
                6,
            )
            cached = row.get("cached_prompt_tokens", 0) * price.get("prompt", 0)
            cached += row.get("cached_completion_tokens", 0) * price.get("completion", 0)
            row["cost_saved_usd"] = round(cached / 1e6, 6)
        figures[role] = row
    return figures


ROLE_COLUMNS = (
    "role",
    "model",
    "engine",
    "calls",
    "prompt tokens",
    "completion tokens",
    "errors",
    "retries",
    "seconds",
    "cost (USD)",
)


def role_rows(figures: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    """summary.roles as table rows under ``ROLE_COLUMNS`` (the report's and the dataset card's)."""
    return [
        [
            role,
            f["model"],
            f["engine"],
            f["calls"],
            f["prompt_tokens"],
            f["completion_tokens"],
            f["errors"],
            f["retries"],
            f"{f['seconds']:.1f}",
            f"{f['cost_usd']:.4f}" if "cost_usd" in f else "",
        ]
        for role, f in figures.items()
    ]


def cascade_line(figures: Mapping[str, Any]) -> str:
    """A cascade's run figures in one sentence (the report's and the dataset card's)."""
    parts = [
        f"cascade: {figures['deferred']:,} of {figures['items']:,} items deferred ({figures['deferral_rate']:.1%})"
    ]
    if "accuracy" in figures:
        parts.append(f"accuracy {figures['accuracy']:.1%}")
    for unit, shown in (("tokens", "{:,.0f} tokens"), ("cost_usd", "${:,.4f}")):
        if f"cascade_{unit}" in figures:
            spent = shown.format(figures[f"cascade_{unit}"])
            if f"all_large_{unit}" in figures:
                spent += f" vs ≈{shown.format(figures[f'all_large_{unit}'])} sending every item to the large model"
            parts.append(spent)
    return "; ".join(parts)
