"""Shard work on dask.distributed: an embedded LocalCluster by default, an existing scheduler by address.

The cluster starts lazily, on the first node that has shards to compute, so a fully cached run never pays for it.
Shards are independent tasks; the order results come back in never changes what is written, so the output does not
depend on the number of workers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from flows.schema import ExecutorSpec


class DaskExecutor:
    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._client is not None

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from distributed import Client, LocalCluster

                if self.spec.address:
                    self._client = Client(self.spec.address, timeout="30s")
                else:
                    n = self.spec.n_workers or max(1, os.cpu_count() or 1)
                    self._cluster = LocalCluster(
                        n_workers=n,
                        threads_per_worker=self.spec.threads_per_worker,
                        processes=self.spec.processes,
                        memory_limit=self.spec.memory_limit,
                        dashboard_address=os.environ.get("ARCFLOW_DASK_DASHBOARD", ":0"),
                        silence_logs=logging.ERROR,
                        resources={"CPU": self.spec.threads_per_worker},
                    )
                    self._client = Client(self._cluster)
                # Dask's own INFO logs (nanny start/stop, scheduler chatter) drown the run's output
                level = os.environ.get("ARCFLOW_DASK_LOG_LEVEL", "WARNING").upper()
                logging.getLogger("distributed").setLevel(level)
            return self._client

    def slots(self) -> int:
        """Worker threads across the cluster (what shard tasks can run at once)."""
        if self.spec.address:
            return max(1, sum(self.client().nthreads().values()))
        n = self.spec.n_workers or max(1, os.cpu_count() or 1)
        return n * self.spec.threads_per_worker

    def describe(self) -> str:
        if self.spec.address:
            return f"dask scheduler {self.spec.address}"
        n = self.spec.n_workers or max(1, os.cpu_count() or 1)
        return f"local dask cluster, {n} worker(s) x {self.spec.threads_per_worker} thread(s)"

    def map(
        self,
        fn: Callable[..., Any],
        items: Sequence[Any],
        *,
        on_done: Callable[[int, Any], None] | None = None,
        retries: int = 0,
        resources: dict[str, float] | None = None,
        key_prefix: str = "shard",
        max_in_flight: int | None = None,
    ) -> list[Any]:
        """Run ``fn(item)`` for every item on the cluster; results in item order. ``on_done(i, result)`` is
        called as each finishes (for progress). The first failure cancels the rest and is raised."""
        if not items:
            return []
        from distributed import as_completed

        client = self.client()
        items = list(items)
        tag = os.urandom(4).hex()
        limit = len(items) if max_in_flight is None else max(1, max_in_flight)

        def submit(lo: int, hi: int) -> list[Any]:
            return client.map(
                fn,
                items[lo:hi],
                pure=False,
                retries=retries,
                resources=resources,
                key=[f"{key_prefix}-{i}-{tag}" for i in range(lo, hi)],
            )

        first = submit(0, limit)
        every = list(first)
        index = {f.key: i for i, f in enumerate(first)}
        pending = as_completed(first)
        submitted = len(first)
        results: list[Any] = [None] * len(items)
        try:
            for fut in pending:
                i = index.pop(fut.key)
                results[i] = fut.result()
                if on_done is not None:
                    on_done(i, results[i])
                if submitted < len(items):  # keep at most `limit` in flight
                    (nxt,) = submit(submitted, submitted + 1)
                    every.append(nxt)
                    index[nxt.key] = submitted
                    pending.add(nxt)
                    submitted += 1
        except BaseException:
            client.cancel(every)
            raise
        return results

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None
