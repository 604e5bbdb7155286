"""An OpenAI-compatible server for the HTTP engine's tests, with faults on demand, on 127.0.0.1.

Answers ``POST /v1/chat/completions``, ``POST /v1/completions`` and ``GET /v1/models`` with the dry-run engine's
deterministic text (a JSON object for a ``response_format`` schema) and real ``usage``. ``faults`` maps a request
number's remainder to a fault, so a run meets every kind of failure at a known rate; the server records what it saw
(peak concurrency, request times, statuses) for the tests to check limits against.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from generation.engines import DryRunEngine

FAULTS = ("429", "500", "timeout", "malformed", "drop", "401")


@dataclass
class Seen:
    """What the server saw: every request's arrival time and answer, and the most requests in flight at once."""

    times: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    in_flight: int = 0
    peak: int = 0
    bodies: list[dict] = field(default_factory=list)

    def most_in_window(self, seconds: float) -> int:
        """The most requests that arrived within any ``seconds``-long window."""
        times, best, start = sorted(self.times), 0, 0
        for end, at in enumerate(times):
            while at - times[start] > seconds:
                start += 1
            best = max(best, end - start + 1)
        return best


class FaultServer:
    """Args:
    model: the model name served.
    key: the API key expected (None: any); a wrong one gets a 401 that echoes it, as some providers do.
    faults: request number modulo ``every`` → fault, e.g. ``{3: "429", 5: "500"}`` with ``every=10``.
    latency_s: how long each answer takes (concurrency builds up across callers).
    honour_n: False answers one choice whatever ``n`` asks.
    response_format: False refuses requests that carry one (400), like servers without constrained output.
    retry_after_s: the ``Retry-After`` a 429 carries.
    hang_s: how long a ``timeout`` fault holds the request before answering.
    echo: answer with the last message itself (tests plant replies), as the dry-run engine's echo mode does.
    port: 0 picks a free one.
    """

    def __init__(
        self,
        model: str = "fault-model",
        *,
        key: str | None = None,
        faults: dict[int, str] | None = None,
        every: int = 10,
        latency_s: float = 0.02,
        honour_n: bool = True,
        response_format: bool = True,
        retry_after_s: float = 0.2,
        hang_s: float = 5.0,
        echo: bool = False,
        port: int = 0,
    ) -> None:
        unknown = sorted(set((faults or {}).values()) - set(FAULTS))
        if unknown:
            raise ValueError(f"unknown faults {unknown}; valid: {list(FAULTS)}")
        self.model, self.key, self.faults, self.every = model, key, dict(faults or {}), every
        self.latency_s, self.honour_n, self.response_format = latency_s, honour_n, response_format
        self.retry_after_s, self.hang_s = retry_after_s, hang_s
        self.seen = Seen()
        self.engine = DryRunEngine(model_name=model, echo=echo)
        self._count = 0
        self.port = port
        self.down = False  # True: every request is a 503 (a server that stays down)
        self.down_after: int | None = None  # requests answered before it goes down

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _authorized(self, request: web.Request) -> web.Response | None:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.key is not None and presented != self.key:
            message = f"Incorrect API key provided: {presented}"
            return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=401)
        return None

    async def models(self, request: web.Request) -> web.Response:
        return self._authorized(request) or web.json_response({"data": [{"id": self.model, "object": "model"}]})

    async def complete(self, request: web.Request) -> web.StreamResponse:
        self.seen.times.append(time.monotonic())
        self.seen.in_flight += 1
        self.seen.peak = max(self.seen.peak, self.seen.in_flight)
        try:
            response = await self._answer(request)
        finally:
            self.seen.in_flight -= 1
        self.seen.statuses[getattr(response, "status", 0)] += 1
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        refused = self._authorized(request)
        if refused is not None:
            return refused
        number, self._count = self._count, self._count + 1
        if self.down or (self.down_after is not None and number >= self.down_after):
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        fault = self.faults.get(number % self.every)
        body = await request.json()
        self.seen.bodies.append(body)
        if fault == "429":
            headers = {"Retry-After": str(self.retry_after_s)}
            return web.json_response({"error": {"message": "rate limited"}}, status=429, headers=headers)
        if fault == "500":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if fault == "401":  # echoes the key, as some providers do: the engine must mask it
            presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
            return web.json_response({"error": {"message": f"key {presented} revoked"}}, status=401)
        if fault == "timeout":
            await asyncio.sleep(self.hang_s)
        if fault == "drop":
            request.transport.close()  # the connection dies with no answer
            return web.Response(status=500)
        if "response_format" in body and not self.response_format:
            message = "response_format is not supported by this server"
            return web.json_response({"error": {"message": message}}, status=400)
        await asyncio.sleep(self.latency_s)
        if fault == "malformed":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        return web.json_response(await self._completion(body, request.path.endswith("chat/completions")))

    async def _completion(self, body: dict, chat: bool) -> dict:
        n = int(body.get("n") or 1) if self.honour_n else 1
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        sampling = {k: body[k] for k in ("max_tokens",) if k in body}
        if chat:
            done = await self.engine.chat(body["messages"], n=n, json_schema=schema, **sampling)
        else:
            done = await self.engine.generate(body["prompt"], n=n, json_schema=schema, **sampling)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}} if chat else {"index": i, "text": t}
            for i, t in enumerate(done.texts)
        ]
        usage = {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens}
        return {"id": "fault", "object": "chat.completion", "model": self.model, "choices": choices, "usage": usage}


@contextlib.contextmanager
def serving(server: FaultServer) -> Iterator[FaultServer]:
    """Run ``server`` on 127.0.0.1 (a free port) in a thread of this process until the block ends."""
    app = web.Application()
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/chat/completions", server.complete)
    app.router.add_post("/v1/completions", server.complete)
    loop = asyncio.new_event_loop()
    # A closed connection cancels its handler, as vLLM aborts a request whose client went away.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", server.port)
        await site.start()
        server.port = site._server.sockets[0].getsockname()[1]

    thread = threading.Thread(target=loop.run_forever, name="fault-server", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


if __name__ == "__main__":  # a standalone server for a driver in another process: prints its URL, serves until killed
    import sys

    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    options["faults"] = {int(k): v for k, v in (options.get("faults") or {}).items()}
    with serving(FaultServer(**options)) as running:
        print(running.base_url, flush=True)
        threading.Event().wait()
