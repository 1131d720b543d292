"""A real local HTTP server speaking the OpenAI chat-completions protocol, for the teacher tests.

It answers arithmetic itself: it finds the expression in the user message ("Calculate 3 + 4." or "... 3 + 4
=") and replies with a ``<think>`` trace and ``Answer: <value>``. Faults are chosen per prompt by marker words
or globally: ``fail_first`` (a list of status codes returned on the first attempts of every request),
``GARBAGE`` / ``SLOW`` / ``BADREQ`` / ``TRUNCATE`` / ``OFFBYONE`` markers in the prompt, ``delay_s`` per
request. It records every request, the attempts per (prompt, seed) key and the most requests it served at
once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPR = re.compile(r"(?:Calculate|problem:)\s*([-+*/() 0-9]+?)\s*[.=]?\s*$", re.S)


def solve(prompt: str) -> str | None:
    m = EXPR.search(prompt.strip())
    if not m:
        return None
    try:
        value = eval(
            re.sub(r"(\d+)", r"Fraction(\1)", m.group(1)), {"Fraction": Fraction}
        )  # digits and ops only
    except (SyntaxError, ZeroDivisionError):
        return None
    return str(value.numerator) if value.denominator == 1 else str(float(value))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the benchmark opens dozens of connections at once

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients killed mid-request (the resume test) are expected


class FakeOpenAI:
    def __init__(
        self, delay_s: float = 0.0, fail_first: list[int] | None = None, wrong_every: int = 0
    ) -> None:
        self.delay_s, self.fail_first, self.wrong_every = delay_s, list(fail_first or []), wrong_every
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.attempts: Counter[tuple[str, int]] = Counter()
        self.active = self.max_active = 0
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reply(self, body: dict) -> tuple[int, bytes]:
        prompt = body["messages"][-1]["content"]
        key = (prompt, int(body.get("seed", 0)))
        with self.lock:
            self.requests.append(body)
            self.attempts[key] += 1
            attempt = self.attempts[key]
            n = len(self.requests)
        if attempt <= len(self.fail_first):
            return self.fail_first[attempt - 1], b'{"error": {"message": "try again"}}'
        if "GARBAGE" in prompt:
            return 200, b"<html>not json at all"
        if "BADREQ" in prompt:
            return 400, b'{"error": {"message": "bad request"}}'
        if "SLOW" in prompt:
            time.sleep(2)
        answer = solve(prompt)
        if answer is None:
            text = "I do not know."
        else:
            if "OFFBYONE" in prompt or (self.wrong_every and n % self.wrong_every == 0):
                answer = str(int(float(answer)) + 1)
            trace = f"Draw {key[1]}: I evaluate the expression step by step and get {answer}."
            text = f"<think>\n{trace}\n</think>\n\nAnswer: {answer}"
        finish = "length" if "TRUNCATE" in prompt else "stop"
        data = {
            "id": f"c{n}",
            "object": "chat.completion",
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": len(prompt.split()),
                "completion_tokens": len(text.split()),
                "total_tokens": len(prompt.split()) + len(text.split()),
            },
        }
        return 200, json.dumps(data).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                with server.lock:
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    status, payload = server.reply(body)
                finally:
                    with server.lock:
                        server.active -= 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler
