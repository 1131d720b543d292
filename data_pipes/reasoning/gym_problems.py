"""reasoning-gym generators as problems: seeded, chosen by name, with their entry kept for re-verification.

reasoning-gym builds item ``i`` of a dataset from ``Random(seed + i)``, so a shard can render items
``start..stop`` alone: the listing stays cheap and the rows do not depend on the shard layout. The whole entry
(question, answer, metadata) is stored as JSON in ``meta["entry"]`` because ``score_answer`` needs it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from data_pipes.io.atomic import atomic_write_text
from data_pipes.reasoning.problem_table import problem_row


def gym_names() -> list[str]:
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def gym_domain(name: str) -> str:
    """The generator's family in reasoning-gym (``arithmetic``, ``algebra``, ``logic``...)."""
    from reasoning_gym.factory import DATASETS

    return DATASETS[name][0].__module__.split(".")[1]


def _verdict_cache() -> str:
    base = os.environ.get("ARCFLOW_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "arcflow")
    return os.path.join(base, "reasoning_gym_specs.json")


def check_gym_spec(name: str, config: dict[str, Any]) -> str | None:
    """None when ``name`` and ``config`` make a dataset, else the message saying why not.

    Importing reasoning-gym takes about a second (it loads every generator), so specs found valid are remembered
    per reasoning-gym version in a small JSON file (``$ARCFLOW_CACHE_DIR``, default ``~/.cache/arcflow``); only
    an unseen spec, or an invalid one, imports it."""
    from importlib.metadata import version

    key = json.dumps([version("reasoning-gym"), name, config], sort_keys=True, default=repr)
    path = _verdict_cache()
    try:
        with open(path, encoding="utf-8") as fh:
            valid = set(json.load(fh))
    except (OSError, ValueError):
        valid = set()
    if key in valid:
        return None
    verdict = _check_gym_spec(name, config)
    if verdict is None:
        try:
            atomic_write_text(path, json.dumps(sorted(valid | {key})))
        except OSError:
            pass  # a read-only home only costs the import next time
    return verdict


def _check_gym_spec(name: str, config: dict[str, Any]) -> str | None:
    import difflib

    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return f"unknown reasoning-gym generator {name!r}; {hint}{len(DATASETS)} are installed"
    config_cls = DATASETS[name][1]
    try:
        cfg = config_cls(**config)
        if hasattr(cfg, "validate"):
            cfg.validate()
    except (TypeError, ValueError, AssertionError) as exc:
        return f"bad config for {name!r}: {exc}"
    return None


def _plain(value: Any) -> Any:
    """Entry values as JSON values (tuples become lists, sets sorted lists, others their repr)."""
    return json.loads(json.dumps(value, default=lambda v: sorted(v) if isinstance(v, set) else repr(v)))


def gym_rows(
    name: str, seed: int, size: int, start: int, stop: int, config: dict[str, Any], difficulty: str
) -> list[dict[str, str]]:
    """Problem rows for items ``start..stop`` of ``create_dataset(name, seed=seed, size=size, **config)``."""
    import reasoning_gym

    dataset = reasoning_gym.create_dataset(name, seed=seed, size=size, **config)
    domain = gym_domain(name)
    rows = []
    for i in range(start, min(stop, size)):
        entry = _plain(dataset[i])
        rows.append(
            problem_row(
                id=f"gym:{name}:{seed}:{i}",
                prompt=entry["question"],
                answer=str(entry["answer"] or ""),
                source=f"reasoning_gym:{name}",
                domain=domain,
                difficulty=difficulty,
                url=f"reasoning_gym://{name}/{seed}/{i}",
                meta={
                    "generator": name,
                    "seed": seed,
                    "index": i,
                    "size": size,
                    "config": config,
                    "entry": entry,
                },
            )
        )
    return rows


def score_gym(name: str, answer: str | None, entry: dict[str, Any], config: dict[str, Any]) -> float:
    """reasoning-gym's own verifier for ``answer`` (1.0 is right)."""
    from reasoning_gym.factory import DATASETS

    dataset_cls, config_cls = DATASETS[name]
    key = json.dumps([name, config], sort_keys=True)
    dataset = _scorer_cache.get(key)
    if dataset is None:
        dataset = _scorer_cache[key] = dataset_cls(config_cls(**{**config, "size": 1}))
    return float(dataset.score_answer(answer, entry))


_scorer_cache: dict[str, Any] = {}
