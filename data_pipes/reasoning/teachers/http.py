"""`HttpTeacher`: OpenAI chat-completions over HTTP (what vLLM and SGLang serve), with asyncio and httpx.

At most ``concurrency`` requests are in flight (a semaphore, and a connection pool of the same size). 429,
5xx, timeouts, connection errors and unparseable bodies are retried with exponential backoff and jitter (a
``Retry-After`` header is honoured); other 4xx are final. A request that still fails becomes a response with
``error`` set: the caller counts it, nothing raises. Each response is handed to ``on_result`` as it arrives,
which is what makes generation resumable (see ``gen_cache``).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from data_pipes.reasoning.teachers.base import GenRequest, GenResponse, OnResult

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error, self.retry_after = error, retry_after


def parse_completion(body: bytes) -> tuple[str, str, dict[str, int]]:
    """(text, finish_reason, usage) of a chat-completions body; ValueError on anything else. A separate
    ``reasoning_content`` (vLLM's and SGLang's reasoning parsers) is put back as a ``<think>`` block."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        finish = choice.get("finish_reason") or "stop"
        usage = {k: int(v) for k, v in (data.get("usage") or {}).items() if isinstance(v, int)}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a chat completion: {exc!r}: {body[:120]!r}") from None
    if not isinstance(text, str) or not isinstance(reasoning, str):
        raise ValueError(f"content is not text: {body[:120]!r}")
    if reasoning:
        text = f"<think>\n{reasoning.strip()}\n</think>\n\n{text.lstrip()}"
    return text, str(finish), usage


class HttpTeacher:
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        seed: int = 0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.concurrency, self.timeout_s, self.retries = concurrency, timeout_s, retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.name = f"http:{model}"
        self._rng = random.Random(seed)

    def generate(
        self, requests: Sequence[GenRequest], on_result: OnResult | None = None
    ) -> list[GenResponse]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests, on_result))
        box: list[list[GenResponse]] = []  # inside a running loop (a notebook): run on a thread of our own
        thread = threading.Thread(target=lambda: box.append(asyncio.run(self.agenerate(requests, on_result))))
        thread.start()
        thread.join()
        return box[0]

    async def agenerate(
        self, requests: Sequence[GenRequest], on_result: OnResult | None = None
    ) -> list[GenResponse]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        sem = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=self.timeout_s) as client:

            async def one(req: GenRequest) -> GenResponse:
                resp = await self._request(client, sem, req)
                if on_result is not None:
                    on_result(resp)
                return resp

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def _payload(self, req: GenRequest) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": req.messages,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
            "seed": req.seed,
            "n": 1,
        }

    async def _request(
        self, client: httpx.AsyncClient, sem: asyncio.Semaphore, req: GenRequest
    ) -> GenResponse:
        started = time.perf_counter()
        error = ""
        for attempt in range(1, self.retries + 2):
            try:
                async with sem:
                    text, finish, usage = await self._post(client, req)
                return GenResponse(req.key, text, finish, usage, None, attempt, time.perf_counter() - started)
            except _Retryable as exc:
                error = exc.error
                if attempt > self.retries:
                    break
                await asyncio.sleep(self._delay(attempt, exc.retry_after))
            except _Final as exc:
                return GenResponse(req.key, "", "error", {}, str(exc), attempt, time.perf_counter() - started)
        return GenResponse(
            req.key,
            "",
            "error",
            {},
            f"{error} (after {self.retries + 1} attempts)",
            self.retries + 1,
            time.perf_counter() - started,
        )

    async def _post(self, client: httpx.AsyncClient, req: GenRequest) -> tuple[str, str, dict[str, int]]:
        try:
            resp = await client.post(self.url, json=self._payload(req))
        except httpx.TimeoutException as exc:
            raise _Retryable(f"teacher_timeout: {type(exc).__name__} after {self.timeout_s}s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"teacher_connection: {type(exc).__name__}: {exc}") from None
        if resp.status_code in RETRY_STATUS:
            raise _Retryable(
                f"teacher_http_{resp.status_code}: {resp.text[:120]}",
                _retry_after(resp.headers.get("retry-after")),
            )
        if resp.status_code >= 400:
            raise _Final(f"teacher_http_{resp.status_code}: {resp.text[:200]}")
        try:
            return parse_completion(resp.content)
        except ValueError as exc:
            raise _Retryable(f"teacher_garbage: {exc}") from None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_backoff_s, retry_after)
        cap = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return cap * (0.5 + 0.5 * self._rng.random())  # jitter: spreads the retries of a burst of failures

    def close(self) -> None:
        pass


class _Final(Exception):
    pass


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
