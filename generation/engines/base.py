"""The contract every engine kind keeps: the async client a recipe sees and the ``Completion`` it returns.

A recipe only ever sees ``EngineClient``: ``chat``/``generate`` coroutines that return a ``Completion`` and never
raise for a bad prompt. Many recipe coroutines await the same engine at once, so vLLM's continuous batching (or an
HTTP server's) sees every in-flight request of every seed an actor holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    # True: each Completion carries its chosen tokens' log-probabilities (``Completion.logprobs``).
    "logprobs",
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
    # Requests sent again after a transient failure (HTTP engines), the call's wall time and the role that made it
    # (set by generation/roles.py): per-role figures in run.json are summed from these.
    retries: int = 0
    seconds: float = 0.0
    role: str = ""
    # With ``logprobs=True``: per text, the log-probability of each token the engine chose (None: not asked, or the
    # engine has none). From ``score``: choice → probability, normalised over the choices.
    logprobs: list[list[float]] | None = None
    scores: dict[str, float] | None = None
    cached: bool = False  # replayed from the completion cache: no engine was asked

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

    async def score(self, messages: Messages, choices: Sequence[str]) -> Completion:
        """How likely the model is to answer ``messages`` with each of ``choices`` (``Completion.scores``: choice →
        probability, summing to 1 over the choices); an engine that cannot tell answers with an error value."""
        ...

    def shutdown(self) -> None:
        """Stops the engine's processes (called by the engine's owner, never by a recipe)."""


def check_sampling(sampling: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``sampling`` (None: empty) without unset (None) keys; an unknown key names the valid ones."""
    sampling = dict(sampling or {})
    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise ValueError(f"unknown sampling key(s) {unknown}; valid keys: {list(SAMPLING_KEYS)}")
    return {k: v for k, v in sampling.items() if v is not None}


def estimated_tokens(text: str) -> int:
    """Tokens of ``text`` for a client without the model's tokenizer: about four characters per token in English."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def check_choices(choices: Sequence[str]) -> str | None:
    """Why ``choices`` cannot be scored (None: they can): at least two distinct non-empty strings."""
    if len(choices) < 2 or len(set(choices)) != len(choices) or not all(isinstance(c, str) and c for c in choices):
        return f"score needs at least two distinct non-empty choices, got {list(choices)!r}"
    return None


def normalised_scores(choices: Sequence[str], logprobs: Sequence[float]) -> dict[str, float]:
    """choice → probability from each choice's summed token log-probability (a softmax over the choices)."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return {choice: w / total for choice, w in zip(choices, weights, strict=True)}


def token_confidence(logprobs: Sequence[float]) -> float | None:
    """The geometric mean probability of the chosen tokens (exp of their mean log-probability); None without any."""
    return math.exp(sum(logprobs) / len(logprobs)) if logprobs else None
