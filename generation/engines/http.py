"""An OpenAI-compatible server as an engine: ``vllm serve``, Ray Serve LLM, SGLang, hosted APIs.

Built on ``httpx`` rather than the ``openai`` package: synthray needs two POST endpoints, its own retry policy
(counted per call, ``Retry-After`` honoured, a malformed body retried like a dropped connection) and the raw status
and body of a refusal for the error row; with the ``openai`` client that means turning its retries off and reading
raw responses anyway. Every request first takes a permit from the run's ``RequestBudget`` (in-flight requests and
rate budgets for the whole run). The API key is read from the environment variable the config names and is masked
in every text this module produces.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import jsonschema

from generation.engines.base import (
    Completion,
    EngineUnavailable,
    Messages,
    check_choices,
    check_sampling,
    estimated_tokens,
    normalised_scores,
)
from generation.engines.budget import RequestBudget
from generation.jsontext import parse_json

log = logging.getLogger("synthray")
# httpx logs every request at INFO: a line per call would drown the run's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)

RETRIED_STATUS = {408, 409, 429, 500, 502, 503, 504}
BACKOFF_BASE_S, BACKOFF_CAP_S, RETRY_AFTER_CAP_S = 0.5, 30.0, 120.0
# A request the client gave up on holds its slot this much longer: the server needs a moment to see the closed
# connection and drop the work, or the next request would briefly make one more in flight than the budget allows.
ABANDONED_GRACE_S = 0.5
# A refusal of ``response_format`` names it: the server does not do constrained output, so the schema goes in the
# prompt and the reply is validated here.
_SCHEMA_REFUSAL = ("response_format", "json_schema", "structured", "guided")


class Refused(Exception):
    """The server answered with a status that retrying will not change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class Transient(Exception):
    """A failure worth retrying: a retried status, a timeout, a dropped connection, a malformed body."""

    def __init__(
        self, what: str, retry_after_s: float | None = None, down: bool = True, abandoned: bool = False
    ) -> None:
        super().__init__(what)
        self.retry_after_s = retry_after_s
        self.down = down  # the server did not answer usefully at all (vs. a body it could not form once)
        self.abandoned = abandoned  # the client gave up waiting: the server may still be working on it


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), capped; None when absent or unreadable."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def backoff_s(retry: int, hinted: float | None) -> float:
    """Wait before retry number ``retry`` (0-based): the server's hint, or full-jitter exponential backoff."""
    if hinted is not None:
        return hinted + random.uniform(0, 0.1 * hinted + 0.05)
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**retry))


def server_message(response: httpx.Response) -> str:
    """The server's own words for a refusal: OpenAI's ``error.message``, FastAPI's ``detail``, or the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        for key in ("message", "detail", "error"):
            if body.get(key):
                return str(body[key])[:300]
    return json.dumps(body)[:300]


def check_base_url(base_url: Any) -> None:
    if not str(base_url or "").startswith(("http://", "https://")):
        raise ValueError(f"base_url must be the http(s):// URL of an OpenAI-compatible API, got {base_url!r}")


class HTTPEngine:
    """Args:
    name: the model name sent to the server.
    base_url: the server's OpenAI API root, e.g. ``http://host:8000/v1``.
    api_key_env: the environment variable holding the key (never the key itself); unset means no key.
    max_concurrency: in-flight requests (with ``budget`` given, the run-wide budget decides instead).
    requests_per_minute, tokens_per_minute: rate budgets (ditto).
    max_retries: retries of a transient failure before the call gives up.
    timeout_s: per request.
    budget: the run-wide ``RequestBudget`` (or a handle with the same async methods); by default one of its own.
    sampling: default sampling for every call.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 32,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int = 6,
        timeout_s: float = 120.0,
        budget: Any = None,
        **sampling: Any,
    ) -> None:
        check_base_url(base_url)
        self.model_name, self.base_url = name, base_url.rstrip("/")
        self.api_key_env, self.max_retries = api_key_env, int(max_retries)
        self.default_sampling = check_sampling(sampling)
        self.budget = budget or RequestBudget(int(max_concurrency), requests_per_minute, tokens_per_minute)
        self._key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._timeout_s, self._connections = float(timeout_s), int(max_concurrency)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._schema_in_prompt = False  # set once the server refuses response_format

    @property
    def client(self) -> httpx.AsyncClient:
        """The connection pool of the running event loop (a pool cannot move between loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                headers={"Authorization": f"Bearer {self._key}"} if self._key else {},
                timeout=httpx.Timeout(self._timeout_s),
                limits=httpx.Limits(max_connections=self._connections, max_keepalive_connections=self._connections),
            )
            self._loop = loop
        return self._client

    def _masked(self, text: str) -> str:
        return text.replace(self._key, "***") if len(self._key) >= 4 else text

    def count_tokens(self, text: str) -> int:
        return estimated_tokens(text)  # No tokenizer for a remote model

    async def chat(
        self, messages: Messages, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        return await self._call("chat/completions", {"messages": messages}, n, json_schema, sampling)

    async def generate(
        self, prompt: str, *, n: int = 1, json_schema: dict | None = None, **sampling: Any
    ) -> Completion:
        return await self._call("completions", {"prompt": prompt}, n, json_schema, sampling)

    async def _call(
        self, endpoint: str, content: dict[str, Any], n: int, json_schema: dict | None, sampling: dict[str, Any]
    ) -> Completion:
        try:
            params = {**self.default_sampling, **check_sampling(sampling)}
        except ValueError as exc:
            return Completion(error=str(exc))
        done = Completion()
        if json_schema is not None and self._schema_in_prompt:
            content = _with_schema_in_prompt(content, json_schema)
        # A server that does not honour ``n`` returns fewer choices: ask again for the rest.
        while len(done.texts) < n and done.error is None:
            part = await self._request(endpoint, content, n - len(done.texts), json_schema, params)
            if part.error is None and not part.texts:
                part.error = f"{self.base_url}/{endpoint} returned no choices"
            if json_schema is not None and not self._schema_in_prompt and _refuses_schema(part.error):
                log.warning("%s refused response_format; JSON schemas now go in the prompt", self.base_url)
                self._schema_in_prompt = True
                content = _with_schema_in_prompt(content, json_schema)
                done.retries += part.retries
                continue
            done.texts += part.texts
            if part.logprobs is not None:
                done.logprobs = (done.logprobs or []) + part.logprobs
            done.prompt_tokens += part.prompt_tokens
            done.completion_tokens += part.completion_tokens
            done.retries += part.retries
            done.error = part.error
        if done.error is None and json_schema is not None and self._schema_in_prompt:
            done.texts, done.error = _validated(done.texts, json_schema)
        return done

    def _body(
        self, content: dict[str, Any], n: int, json_schema: dict | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        # Sampling keys go as they are: top_k, min_tokens and repetition_penalty are vLLM/SGLang extensions that a
        # hosted API refuses, sent only when a config sets them.
        body = {"model": self.model_name, **content, "n": n, **params}
        if body.pop("logprobs", False):  # the chat API takes a flag, the completions API a count of alternatives
            body["logprobs"] = True if "messages" in content else 0
        if json_schema is not None and not self._schema_in_prompt:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": json_schema},
            }
        return body

    async def _request(
        self, endpoint: str, content: dict[str, Any], n: int, json_schema: dict | None, params: dict[str, Any]
    ) -> Completion:
        body = self._body(content, n, json_schema, params)
        estimate = estimated_tokens(json.dumps(content)) + int(params.get("max_tokens") or 256) * n
        reply, retries, error = await self._send(
            f"{self.base_url}/{endpoint}", body, lambda r: _parsed(r, endpoint), estimate
        )
        if error is not None:
            return Completion(error=error, retries=retries)
        reply.retries = retries
        return reply

    async def _send(
        self, url: str, body: dict[str, Any], parse: Callable[[httpx.Response], Any], estimate: int
    ) -> tuple[Any, int, str | None]:
        """POST ``body`` under the run's budget, retrying transient failures: (parsed reply, retries, None), or
        (None, retries, why) for a refusal or retries exhausted on a reply the server could not form."""
        last = ""
        for retry in range(self.max_retries + 1):
            lease = await self.budget.acquire(estimate)
            used, abandoned = None, False
            try:
                reply = parse(await self._post(url, body))
                if isinstance(reply, Completion):
                    used = reply.prompt_tokens + reply.completion_tokens
                return reply, retry, None
            except Refused as refused:
                return None, retry, self._refusal(url, refused)
            except Transient as failed:
                last, hinted, down = self._masked(str(failed)), failed.retry_after_s, failed.down
                abandoned = failed.abandoned
            finally:
                if abandoned:
                    await asyncio.sleep(ABANDONED_GRACE_S)
                await self.budget.release(lease, used)
            if retry < self.max_retries:
                await asyncio.sleep(backoff_s(retry, hinted))
        if down:
            raise EngineUnavailable(
                f"the server at {self.base_url} still fails after {self.max_retries} retries ({last}); committed "
                "seeds are kept: rerun the same command to resume once it is back"
            )
        return None, self.max_retries, f"{url}: {last} (after {self.max_retries} retries)"

    async def score(self, messages: Messages, choices: Sequence[str]) -> Completion:
        """The server's chat template and tokens (vLLM's ``/tokenize``), then each choice's prompt log-probabilities
        from the completions endpoint (``echo`` + ``logprobs`` over token ids). A server offering neither answers
        with an error value that says so."""
        if bad := check_choices(choices):
            return Completion(error=bad)
        root = self.base_url.removesuffix("/v1")
        done = Completion()

        async def tokens(body: dict[str, Any]) -> list[int]:
            ids, retries, error = await self._send(f"{root}/tokenize", {"model": self.model_name, **body}, _ids, 0)
            done.retries += retries
            if error is not None:
                raise _NoScores(f"cannot render the prompt with the server's chat template ({error})")
            return ids

        async def summed(prefix: list[int], choice: str) -> float:
            ids = prefix + await tokens({"prompt": choice, "add_special_tokens": False})
            params = {"max_tokens": 1, "temperature": 0.0, "logprobs": True}
            reply = await self._request("completions", {"prompt": ids, "echo": True}, 1, None, params)
            done.retries += reply.retries
            done.prompt_tokens += reply.prompt_tokens
            done.completion_tokens += reply.completion_tokens
            if reply.error is not None:
                raise _NoScores(reply.error)
            logprobs = (reply.logprobs or [[]])[0]
            if len(logprobs) < len(ids) or any(lp is None for lp in logprobs[len(prefix) : len(ids)]):
                raise _NoScores("its completions endpoint returns no prompt log-probabilities (echo with logprobs)")
            return sum(logprobs[len(prefix) : len(ids)])

        try:
            prefix = await tokens({"messages": messages, "add_generation_prompt": True, "add_special_tokens": False})
            summed_logprobs = await asyncio.gather(*(summed(prefix, c) for c in choices))
        except _NoScores as missing:
            done.error = f"{self.base_url} cannot score choices: {missing}"
            return done
        done.scores = normalised_scores(choices, summed_logprobs)
        return done

    def _refusal(self, url: str, refused: Refused) -> str:
        message = self._masked(refused.message)
        if refused.status in (401, 403):
            held = "is set" if self._key else "is not set"
            return (
                f"HTTP {refused.status} from {url}: the server refused the API key from environment variable "
                f"{self.api_key_env} (which {held}): {message}"
            )
        return f"HTTP {refused.status} from {url}: {message}"

    async def _post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        try:
            response = await self.client.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise Transient(f"timed out ({type(exc).__name__})", abandoned=True) from exc
        except httpx.TransportError as exc:  # refused, reset or dropped connections, protocol errors
            raise Transient(f"connection failed ({type(exc).__name__}: {exc})") from exc
        if response.status_code in RETRIED_STATUS:
            raise Transient(f"HTTP {response.status_code}: {server_message(response)}", retry_after(response.headers))
        if response.status_code >= 400:
            raise Refused(response.status_code, server_message(response))
        return response

    async def models(self) -> list[str]:
        """The model names the server lists (``GET /models``); a refusal raises ``Refused``, no answer ``Transient``."""
        for retry in range(self.max_retries + 1):
            try:
                response = await self.client.get(f"{self.base_url}/models")
            except httpx.TransportError as exc:
                failed = Transient(f"connection failed ({type(exc).__name__}: {exc})")
            else:
                if response.status_code not in RETRIED_STATUS:
                    if response.status_code >= 400:
                        raise Refused(response.status_code, self._masked(server_message(response)))
                    data = response.json().get("data") or []
                    return [str(m.get("id")) for m in data if isinstance(m, dict)]
                failed = Transient(f"HTTP {response.status_code}", retry_after(response.headers))
            if retry == self.max_retries:
                raise failed
            await asyncio.sleep(backoff_s(retry, failed.retry_after_s))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def shutdown(self) -> None:
        # Connections close with the process; an engine actor ends right after (no event loop to await them in).
        pass


class _NoScores(Exception):
    """What the server lacks to score choices."""


def _parsed(response: httpx.Response, endpoint: str) -> Completion:
    """A completion from a 2xx reply; a body that is not one is ``Transient`` (proxies and overloaded servers send
    truncated or HTML bodies). Log-probabilities are kept when the server sent them for every choice."""
    try:
        body = response.json()
        choices = sorted(body["choices"], key=lambda c: c.get("index", 0))
        if endpoint == "chat/completions":
            texts = [c["message"].get("content") or "" for c in choices]
            logprobs = [[t["logprob"] for t in (c.get("logprobs") or {}).get("content") or []] for c in choices]
        else:
            texts = [c["text"] or "" for c in choices]
            logprobs = [list((c.get("logprobs") or {}).get("token_logprobs") or []) for c in choices]
        usage = body.get("usage") or {}
        done = Completion(texts, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        if all(logprobs):
            done.logprobs = logprobs
        return done
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Transient(f"malformed reply ({type(exc).__name__}): {response.text[:120]!r}", down=False) from exc


def _ids(response: httpx.Response) -> list[int]:
    """The token ids of a ``/tokenize`` reply."""
    try:
        return [int(t) for t in response.json()["tokens"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise Transient(f"malformed reply ({type(exc).__name__}): {response.text[:120]!r}", down=False) from exc


def _refuses_schema(error: str | None) -> bool:
    return error is not None and "HTTP 4" in error and any(word in error for word in _SCHEMA_REFUSAL)


def _with_schema_in_prompt(content: dict[str, Any], schema: dict) -> dict[str, Any]:
    ask = f"\n\nReply with one JSON value only, matching this JSON schema:\n{json.dumps(schema)}"
    if "prompt" in content:
        return {"prompt": content["prompt"] + ask}
    messages = [dict(m) for m in content["messages"]]
    messages[-1]["content"] = messages[-1]["content"] + ask
    return {"messages": messages}


def _validated(texts: list[str], schema: dict) -> tuple[list[str], str | None]:
    """Replies to a schema in the prompt, as JSON text; the first that does not match the schema is the error."""
    values = []
    for i, text in enumerate(texts):
        value = parse_json(text)
        if value is None:
            return texts, f"reply {i} is not JSON (the server does not constrain output): {text[:200]!r}"
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            return texts, f"reply {i} does not match the JSON schema: {exc.message[:200]}"
        values.append(json.dumps(value))
    return values, None
