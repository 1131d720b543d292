"""Single-turn rollouts from an OpenAI-compatible completions server (``rollout.engine.name: openai``): a vLLM or
SGLang server the user runs, serving the policy the stage trains.

Protocol (``POST {base_url}/completions``, one request per sample, ``concurrency`` in flight): the prompt goes
as its token ids (``prompt: [ids]``, which both servers accept, so the server sees exactly the tokens the local
policy would), with ``max_tokens``, ``temperature``, ``top_p``, ``seed`` (the sample's own, as the local engine
derives it: ``prompt seed * 1000003 + sample``, modulo 2**63 - 1), ``n: 1``, ``logprobs: 1`` and the vLLM/SGLang extensions
``stop_token_ids`` (the run's stop ids), ``skip_special_tokens: false`` and ``return_tokens_as_token_ids: true``.

Token ids come back as vLLM writes them with that flag (``logprobs.tokens`` entries ``token_id:<id>``), or from a
``token_ids`` list on the choice (SGLang and newer vLLM); a server that gives neither has its text tokenised by
the local tokenizer (which may split differently from the server; the row is still trained on exactly the ids
recorded). A completion that ended on a stop (``finish_reason: stop``) ends with its stop id: the server's
``stop_reason`` when it is one of the run's stop ids, else the first stop id the server left out (eos first);
``finish_reason: length`` marks it truncated.

The server's log-probs are not used: the old log-probs of the clipped ratio are always recomputed with the local
policy (model/rl/main.py), whose weights the server is meant to serve. A 5xx, 429, timeout, connection error or
unparseable body is retried ``retries`` times with exponential backoff; a 4xx or a request still failing after
its retries is :class:`RolloutEngineError` (naming the URL, the status or error and the attempts), which stops the
step; the run resumes from its last checkpoint. Nothing here reaches anything but ``base_url`` and ``reload_url``.

Weights: after each step's update rank 0 writes the policy as an HF folder ``weights_dir/step-N`` (the previous
ones removed) and, with ``reload_url``, POSTs ``{"model_path": folder}`` to it and waits for a 2xx (SGLang's
``/update_weights_from_disk`` takes that body); before step 1 the starting policy is written and reloaded the
same way. Without ``reload_url`` arcflow reloads nothing: the server keeps serving what it loaded, and the
rollouts are off-policy by as many updates (docs/RL.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from typing import Any

from model.rl.rollout import Completion, Policy, SamplingParams
from model.rl.strategies import Rollout, SingleTurnRollout, _add, completion_text

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_TOKEN_ID = re.compile(r"^token_id:(\d+)$")
_SEED_MIX = 1_000_003  # as model/rl/rollout.py seeds sample j of a prompt
_SEED_MOD = 2**63 - 1


class RolloutEngineError(RuntimeError):
    """The completions server could not give a sample (after its retries, or a request it refused)."""


class _Retry(Exception):
    pass


class OpenAIEngine:
    """Samples completions of token-id prompts from an OpenAI-compatible ``/completions`` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        concurrency: int = 32,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        self.url = base_url.rstrip("/") + "/completions"
        self.model, self.concurrency, self.timeout_s, self.retries = model, concurrency, timeout_s, retries
        self.backoff_s = backoff_s
        self.headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise RolloutEngineError(
                    f"rollout.engine.api_key_env names {api_key_env!r}, which is not set; export it or drop "
                    "api_key_env for a server without a key"
                )
            self.headers["Authorization"] = f"Bearer {key}"

    @classmethod
    def from_spec(cls, engine: Any) -> OpenAIEngine:
        return cls(
            engine.base_url,
            engine.model,
            engine.api_key_env,
            engine.concurrency,
            engine.timeout_s,
            engine.retries,
        )

    def payload(self, prompt: Sequence[int], params: SamplingParams, seed: int) -> dict[str, Any]:
        return {
            "model": self.model, "prompt": [int(t) for t in prompt], "max_tokens": params.max_new_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "seed": seed, "n": 1, "logprobs": 1,
            "stop_token_ids": list(params.stop_ids), "skip_special_tokens": False,
            "return_tokens_as_token_ids": True,
        }  # fmt: skip

    def generate(
        self,
        tokenizer: Any,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        *,
        n_samples: int = 1,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """``n_samples`` completions per prompt, in prompt then sample order (as :func:`model.rl.rollout.generate`)."""
        seeds = list(seeds) if seeds is not None else list(range(len(prompts)))
        # servers take a signed 64-bit seed
        jobs = [
            (i, j, (seeds[i] * _SEED_MIX + j) % _SEED_MOD)
            for i in range(len(prompts))
            for j in range(n_samples)
        ]
        bodies = asyncio.run(self._all([self.payload(prompts[i], params, seed) for i, _, seed in jobs]))
        return [
            _completion(i, j, body, tokenizer, params) for (i, j, _), body in zip(jobs, bodies, strict=True)
        ]

    async def _all(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import httpx

        sem = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(headers=self.headers, limits=limits, timeout=self.timeout_s) as client:

            async def one(payload: dict[str, Any]) -> dict[str, Any]:
                async with sem:
                    return await self._request(client, payload)

            return list(await asyncio.gather(*(one(p) for p in payloads)))

    async def _request(self, client: Any, payload: dict[str, Any]) -> dict[str, Any]:
        import httpx

        error = ""
        for attempt in range(1, self.retries + 2):
            try:
                resp = await client.post(self.url, json=payload)
            except httpx.TimeoutException as exc:
                error = f"timeout ({type(exc).__name__} after {self.timeout_s}s)"
            except httpx.TransportError as exc:
                error = f"connection error ({type(exc).__name__}: {exc})"
            else:
                if resp.status_code in RETRY_STATUS:
                    error = f"HTTP {resp.status_code}: {resp.text[:160]}"
                elif resp.status_code >= 400:
                    raise RolloutEngineError(
                        f"rollout server {self.url} refused a request (HTTP {resp.status_code}: "
                        f"{resp.text[:300]}); check rollout.engine.model and that the server takes token-id "
                        "prompts"
                    )
                else:
                    try:
                        body = json.loads(resp.content)
                        _choice(body)
                        return body
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        error = f"unparseable response ({exc}): {resp.text[:160]!r}"
            if attempt <= self.retries:
                await asyncio.sleep(min(10.0, self.backoff_s * 2 ** (attempt - 1)))
        raise RolloutEngineError(
            f"rollout server {self.url}: {error}, after {self.retries + 1} attempts; check that the server runs "
            "and serves rollout.engine.model, or raise rollout.engine.timeout_s / retries"
        )


def _choice(body: dict[str, Any]) -> dict[str, Any]:
    choice = body["choices"][0]
    if not isinstance(choice.get("text"), str):
        raise ValueError("choices[0].text is not a string")
    return choice


def response_token_ids(choice: dict[str, Any], tokenizer: Any) -> list[int]:
    """The completion's token ids: ``token_ids``, else ``logprobs.tokens`` as ``token_id:<id>``, else the text
    tokenised locally."""
    if isinstance(choice.get("token_ids"), list):
        return [int(t) for t in choice["token_ids"]]
    tokens = (choice.get("logprobs") or {}).get("tokens") or []
    matches = [_TOKEN_ID.match(str(t)) for t in tokens]
    if tokens and all(matches):
        return [int(m.group(1)) for m in matches if m]
    return list(tokenizer(choice["text"], add_special_tokens=False)["input_ids"])


def _completion(i: int, j: int, body: dict[str, Any], tokenizer: Any, params: SamplingParams) -> Completion:
    choice = _choice(body)
    ids = response_token_ids(choice, tokenizer)[: params.max_new_tokens]
    finish = choice.get("finish_reason")
    stops = list(params.stop_ids)
    if finish == "stop" and stops and (not ids or ids[-1] not in stops) and len(ids) < params.max_new_tokens:
        reason = choice.get("stop_reason")
        eos = getattr(tokenizer, "eos_token_id", None)
        ids.append(reason if reason in stops else eos if eos in stops else stops[0])
    truncated = finish == "length" or (finish != "stop" and len(ids) >= params.max_new_tokens)
    return Completion(i, j, ids, truncated)


class OpenAISingleTurnRollout(SingleTurnRollout):
    """``single_turn`` with the samples drawn from the server (scoring and rows as the local engine's)."""

    def __init__(self, scorer: Any, engine: OpenAIEngine, thinking: bool | None = None) -> None:
        super().__init__(scorer, None, thinking)
        self.engine = engine

    def run(
        self,
        policy: Policy,
        problems: Sequence[dict[str, Any]],
        prompts: Sequence[Sequence[int]],
        sampling: SamplingParams,
        n_samples: int,
        seeds: Sequence[int],
        batch_rows: int,
        timings: dict[str, float] | None = None,
    ) -> list[Rollout]:
        started = time.perf_counter()
        comps = self.engine.generate(policy.tokenizer, prompts, sampling, n_samples=n_samples, seeds=seeds)
        _add(timings, "rollout_s", time.perf_counter() - started)
        _add(timings, "gen_tokens", float(sum(len(c.tokens) for c in comps)))
        started = time.perf_counter()
        texts = [completion_text(policy, c.tokens, sampling.stop_ids) for c in comps]
        flat = [problems[i // n_samples] for i in range(len(comps))]
        results = self.scorer.score_batch(flat, texts) if comps else []
        _add(timings, "reward_s", time.perf_counter() - started)
        return [
            Rollout(i // n_samples, c.sample_index, list(c.tokens), t, c.truncated, r)
            for i, (c, t, r) in enumerate(zip(comps, texts, results, strict=True))
        ]


def publish_weights(export: Any, folder: str, step: int, reload_url: str | None, timeout_s: float) -> str:
    """Write the policy (``export(path)``) to ``folder/step-N`` (an HF folder, written under a temporary name
    and renamed; older step folders removed) and, with ``reload_url``, POST ``{"model_path": path}`` there and
    wait for a 2xx. Returns the folder written."""
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, f"step-{step:08d}")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    export(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for name in os.listdir(folder):
        if name.startswith("step-") and name != os.path.basename(final):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    if reload_url:
        import httpx

        try:
            resp = httpx.post(reload_url, json={"model_path": os.path.abspath(final)}, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise RolloutEngineError(
                f"weight reload at {reload_url} failed: {type(exc).__name__}: {exc}"
            ) from None
        if resp.status_code >= 300:
            raise RolloutEngineError(
                f"weight reload at {reload_url} answered HTTP {resp.status_code}: {resp.text[:300]}; the server "
                f"must load the HF folder {final}"
            )
    return final
