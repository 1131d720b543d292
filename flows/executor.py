"""Shard work on dask.distributed: an embedded LocalCluster by default, an existing scheduler by address.

The cluster starts lazily, when a node has shard work to do, so a fully cached run never pays for it. Small work does
not pay for it either: with no cluster started yet, ``map`` runs items in the calling process, one at a time, for as
long as the whole map is projected to finish within ``executor.inline_s`` seconds (measured on the items done so
far); past that it starts the cluster and sends it the rest. Starting a LocalCluster costs seconds (processes, imports
in every worker), more than a small node's whole work, so a single-node rerun of a small node stays fast. A node
that asks for GPUs or memory (``resources.gpus`` / ``resources.memory_gb``), and any run on an external scheduler
(``executor.address``), always uses the cluster. Where an item runs never changes its result, so the output does not
depend on it, nor on the number of workers: results come back in item order.

``resources.memory_gb`` is a Dask resource: every LocalCluster worker offers ``MEMORY_GB`` equal to its memory limit
(``executor.memory_limit``; ``auto`` shares the machine's memory between the workers), and a shard task of a node
with ``memory_gb: M`` takes ``M`` of it, so a worker runs only as many of that node's shards at once as fit. A node
asking more than any worker has is an error before anything is submitted (it would otherwise wait forever); on an
external cluster, declare it on the workers (``dask worker ... --resources "CPU=8,MEMORY_GB=64"``).

An external cluster whose workers declare **no resources at all** (plain ``dask worker ADDRESS``) runs the shard tasks
of a node that asks only for CPU (the default ``cpus: 1``) without resource restrictions: each worker runs as many at
once as it has threads (``--nthreads``), which is what ``CPU=<threads>`` would allow for ``cpus: 1``; a node's
``cpus`` above 1 is then not enforced (said once in the log). A node asking ``gpus`` or ``memory_gb`` is still
matched against what the workers declare, and fails before anything is submitted, with the worker command; so does
every node once any worker declares resources (then every worker must declare ``CPU``).

The embedded LocalCluster slows Dask's own periodic loops (``IDLE_DEFAULTS``): with Dask's defaults an idle cluster
of one worker costs about 0.06 cores (event-loop health ticks every 20 ms, system-monitor samples every 500 ms, the
worker's profiler trigger every 10 ms, memory checks every 100 ms), paid for every second a run lasts; with these,
about 0.01. What changes for a user: Dask's dashboard samples CPU, memory and network every 2 s, its Profile page is
empty, the warning about a blocked event loop measures the block to within 1 s (one just over
``distributed.admin.tick.limit``, 3 s, may go unreported), and a worker's spill/pause/terminate thresholds are
checked every 500 ms (and whenever data is stored, as before). Each key is applied only when the user has not set
it: a Dask config file (``~/.config/dask/*.yaml``, ``/etc/dask``, ``$DASK_CONFIG``), a ``DASK_*`` environment
variable (e.g. ``DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=20ms``) or ``dask.config.set`` in the process before the
cluster starts wins; ``ARCFLOW_DASK_DEFAULTS=0`` keeps all of Dask's own defaults. An external scheduler
(``executor.address``) is left as its owner configured it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from flows.schema import ExecutorSpec

MEMORY = "MEMORY_GB"
STOP_WAIT_S = 120.0  # after a failed map: how long to wait for its tasks already running to stop
_INLINE = threading.Lock()  # one inline item at a time per process (nodes run in concurrent Prefect threads)


# Dask's periodic loops, slowed for the embedded LocalCluster (its scheduler and nannies in this process, the workers
# it starts): see the module's docstring. Dask's defaults in the comments.
IDLE_DEFAULTS: dict[str, Any] = {
    "distributed.admin.tick.interval": "1s",  # event-loop health check (20ms)
    "distributed.admin.system-monitor.interval": "2s",  # dashboard's CPU/memory/network samples (500ms)
    "distributed.worker.profile.enabled": False,  # statistical profiler for the dashboard's Profile page (True)
    "distributed.worker.memory.monitor-interval": "500ms",  # spill/pause/terminate checks (100ms)
}


def dask_overrides() -> dict[str, Any]:
    """The ``IDLE_DEFAULTS`` the user has not set (in a Dask config file, a ``DASK_*`` variable, or in this process:
    a value other than Dask's default); none with ``ARCFLOW_DASK_DEFAULTS=0``."""
    import dask.config
    import distributed  # noqa: F401 - registers distributed's defaults with dask.config

    if os.environ.get("ARCFLOW_DASK_DEFAULTS", "1").strip().lower() in ("0", "false", "no", "off"):
        return {}
    unset = object()
    users = dask.config.collect()  # the config files and DASK_* variables, as Dask read them at import
    dask_defaults = dask.config.merge(*dask.config.defaults)
    out = {}
    for key, value in IDLE_DEFAULTS.items():
        if dask.config.get(key, unset, config=users) is not unset:
            continue
        if dask.config.get(key, unset) != dask.config.get(key, unset, config=dask_defaults):
            continue
        out[key] = value
    return out


class SchedulerUnreachableError(RuntimeError):
    """``executor.address`` names no running Dask scheduler (nothing listens, or something else does)."""


PROBE_S = 10.0  # how long a scheduler has to greet a new connection (it does so at once)


def check_scheduler(address: str, timeout_s: float = PROBE_S) -> None:
    """Raise :class:`SchedulerUnreachableError` unless a Dask scheduler answers at ``address``. A TCP scheduler
    sends its handshake as soon as a connection is accepted; something else listening there (its dashboard on
    the next port, another service) sends nothing, and Dask's own client would wait on it with no end. Only
    ``tcp://`` (or scheme-less) addresses are probed; the client checks the others."""
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp"):
        return
    host, _, port_text = rest.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    what = f"executor.address {address!r}"
    try:
        port = int(port_text)
    except ValueError:
        raise SchedulerUnreachableError(
            f"{what} has no port: write it as tcp://HOST:PORT (a scheduler listens on 8786 by default)"
        ) from None
    try:
        conn = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:  # refused, no route, or no answer to the connect (TimeoutError)
        raise SchedulerUnreachableError(
            f"{what}: cannot connect ({exc.strerror or exc or 'timed out'}): start the scheduler there (`dask "
            f"scheduler --port {port}`), or fix the address in the pipeline's executor section (or --set "
            f"executor.address=...)"
        ) from None
    try:
        with conn:
            conn.settimeout(timeout_s)
            greeting = conn.recv(8)
    except TimeoutError:
        raise SchedulerUnreachableError(
            f"{what}: something listens there but sent no Dask handshake within {timeout_s:.0f} s, so it is not a "
            f"Dask scheduler (its dashboard, on 8787 by default, is a web server): give the scheduler's own port, "
            f"the one `dask scheduler` prints as 'Scheduler at: tcp://...'"
        ) from None
    except OSError:  # reset by the other side: no handshake either
        greeting = b""
    if not greeting:
        raise SchedulerUnreachableError(
            f"{what}: the connection was closed without a Dask handshake: check that a Dask scheduler (not another "
            f"service) listens there"
        )


NO_WORKERS_WARN_S = 30.0  # an external cluster without a worker this long is said (and again every 5 minutes)
NO_WORKERS_POLL_S = 5.0


class _NoWorkersWatch:
    """While a map waits on an external cluster: when no worker is connected for ``NO_WORKERS_WARN_S`` (all
    died, or none was started), say so in the log with the command that adds one, instead of waiting in silence;
    and say when workers are back. The tasks stay queued on the scheduler and run once a worker joins."""

    def __init__(self, client: Any, address: str) -> None:
        self.client, self.address, self.poll_s = client, address, NO_WORKERS_POLL_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arcflow-no-workers-watch", daemon=True)
        self._thread.start()

    def _workers(self) -> int | None:
        try:
            return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except TypeError:  # an older distributed: no n_workers argument
            return len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # noqa: BLE001 - the scheduler itself gone: the map's own wait reports that
            return None

    def _run(self) -> None:
        log = logging.getLogger(__name__)
        since: float | None = None
        said = 0.0
        while not self._stop.wait(self.poll_s):
            n = self._workers()
            if n is None:
                continue
            now = time.monotonic()
            if n:
                if said:
                    log.warning("workers are connected to %s again (%d): the node goes on", self.address, n)
                since, said = None, 0.0
                continue
            since = since if since is not None else now
            if now - since >= NO_WORKERS_WARN_S and (not said or now - said >= 300):
                said = now
                log.warning(
                    "no Dask worker has been connected to %s for %.0f s: the node's tasks wait on the scheduler "
                    "until one joins; start workers (`dask worker %s`, or the commands of `python -m "
                    "flows.placement infra/cluster.yaml`), or stop the run with Ctrl-C",
                    self.address,
                    now - since,
                    self.address,
                )

    def stop(self) -> None:
        self._stop.set()


class ResourceUnavailableError(RuntimeError):
    """No worker of the cluster offers what a node's shard tasks ask for."""


def _quiet_dask() -> None:
    """Dask's own INFO logs (nanny start/stop, scheduler chatter) drown the run's output: ``distributed`` logs at
    ``ARCFLOW_DASK_LOG_LEVEL`` (WARNING by default; the CLI sets ERROR, INFO with -v)."""
    level = os.environ.get("ARCFLOW_DASK_LOG_LEVEL", "WARNING").upper()
    logging.getLogger("distributed").setLevel(level)


class DaskExecutor:
    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()
        self.inline_items = 0  # items run in this process instead of on the cluster (for tests and logs)
        self._warned: set[str] = set()  # nodes told that their cpus are not enforced (``placement``)

    @property
    def started(self) -> bool:
        return self._client is not None

    def _n_workers(self) -> int:
        return self.spec.n_workers or max(1, os.cpu_count() or 1)

    def worker_memory_bytes(self) -> int:
        """Each LocalCluster worker's memory limit, as the cluster will set it."""
        from distributed import system
        from distributed.worker_memory import parse_memory_limit

        n = self._n_workers()
        limit = self.spec.memory_limit
        if limit == "auto":
            return int(system.MEMORY_LIMIT / n)
        parsed = parse_memory_limit(
            limit,
            self.spec.threads_per_worker,
            n * self.spec.threads_per_worker,
            logger=logging.getLogger(__name__),
        )
        return int(parsed or system.MEMORY_LIMIT)

    def local_resources(self) -> dict[str, float]:
        """What each LocalCluster worker offers: its threads as CPU, its memory limit in GB as MEMORY_GB."""
        return {
            "CPU": float(self.spec.threads_per_worker),
            MEMORY: round(self.worker_memory_bytes() / 1e9, 3),
        }

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from distributed import Client, LocalCluster

                # importing distributed resets its logger to INFO (its own logging config): quiet it before the
                # cluster starts, or its start-up chatter (scheduler, nanny, worker registration) is printed
                _quiet_dask()
                if self.spec.address:
                    check_scheduler(
                        self.spec.address
                    )  # bounded: Dask's client can wait on a wrong port forever
                    self._client = Client(self.spec.address, timeout="30s")
                else:
                    import dask.config

                    # read as the scheduler, nannies and workers start (the nannies hand it to their workers)
                    with dask.config.set(dask_overrides()):
                        self._cluster = LocalCluster(
                            n_workers=self._n_workers(),
                            threads_per_worker=self.spec.threads_per_worker,
                            processes=self.spec.processes,
                            memory_limit=self.worker_memory_bytes(),
                            dashboard_address=os.environ.get("ARCFLOW_DASK_DASHBOARD", ":0"),
                            silence_logs=logging.ERROR,
                            resources=self.local_resources(),
                        )
                    self._client = Client(self._cluster)
            return self._client

    def slots(self) -> int:
        """Worker threads across the cluster (what shard tasks can run at once)."""
        if self.spec.address:
            return max(1, sum(self.client().nthreads().values()))
        return self._n_workers() * self.spec.threads_per_worker

    def describe(self) -> str:
        if self.spec.address:
            return f"dask scheduler {self.spec.address}"
        return f"local dask cluster, {self._n_workers()} worker(s) x {self.spec.threads_per_worker} thread(s)"

    def _offers(self) -> list[dict[str, float]]:
        """What each worker of the external cluster declares (``--resources``); ``{}`` for a plain worker."""
        workers = self.client().scheduler_info(n_workers=-1)["workers"].values()
        return [dict(w.get("resources") or {}) for w in workers]

    def placement(
        self, resources: dict[str, float] | None, what: str = "a shard task"
    ) -> dict[str, float] | None:
        """The Dask resources a task asking ``resources`` is submitted with: on an external cluster whose workers
        declare none, a request of CPU only goes without any (see the module doc); else ``resources`` as asked."""
        if not (self.spec.address and resources) or set(resources) - {"CPU"}:
            return resources
        offers = self._offers()
        if not offers or any(offers):
            return resources
        cpus = resources.get("CPU", 1.0)
        if cpus > 1 and what not in self._warned:
            self._warned.add(what)
            logging.getLogger(__name__).warning(
                "%s asks CPU=%g, but the workers of %s declare no resources: it runs as one task per worker "
                'thread (declare them, e.g. `dask worker ADDRESS --resources "CPU=8"`, to reserve its cores)',
                what,
                cpus,
                self.spec.address,
            )
        return None

    def check_resources(self, resources: dict[str, float] | None, what: str = "a shard task") -> None:
        """Fail now, with the fix, when no worker can ever run a task asking ``resources``."""
        if not resources:
            return
        if self.spec.address:
            offers = self._offers()
            where = f"the workers of {self.spec.address}"
        else:
            offers = [self.local_resources()]
            where = (
                f"each LocalCluster worker (executor.n_workers={self._n_workers()}, "
                f"memory_limit={self.spec.memory_limit!r})"
            )
        if any(all(offer.get(k, 0) >= v for k, v in resources.items()) for offer in offers):
            return
        declared = "; ".join(
            sorted({", ".join(f"{k}={v:g}" for k, v in sorted(o.items())) or "none" for o in offers})
        )
        # the command that fixes it: what the task asks, CPU always (a worker that declares resources must)
        need = {"CPU": 1.0, **resources}
        offer = ",".join(f"{k}={v:g}" for k, v in sorted(need.items()))
        fix = (
            f'start workers that offer it, e.g. `dask worker {self.spec.address} --resources "{offer}"` (once any '
            f"worker declares resources, every worker must declare CPU)"
            if self.spec.address
            else "lower the node's resources, or give the workers more (executor.memory_limit, fewer n_workers)"
        )
        asked = ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))
        raise ResourceUnavailableError(
            f"{what} asks {asked}, but {where} offer(s) {declared or 'nothing'}; {fix}"
        )

    def _may_inline(self, resources: dict[str, float] | None) -> bool:
        if self.started or self.spec.address or self.spec.inline_s <= 0:
            return False
        return not any(k not in ("CPU",) and v for k, v in (resources or {}).items())

    def _run_inline(
        self,
        fn: Callable[..., Any],
        items: list[Any],
        results: list[Any],
        on_done: Callable[[int, Any], None] | None,
        retries: int,
    ) -> int:
        """Run items here while the whole map is projected to fit ``inline_s``; returns how many were run."""
        budget = self.spec.inline_s
        with _INLINE:
            started = time.monotonic()
            for i, item in enumerate(items):
                if self.started:  # another node started the cluster meanwhile: use it
                    return i
                for attempt in range(retries + 1):
                    try:
                        results[i] = fn(item)
                        break
                    except Exception:
                        if attempt == retries:
                            raise
                self.inline_items += 1
                if on_done is not None:
                    on_done(i, results[i])
                elapsed = time.monotonic() - started
                if elapsed / (i + 1) * len(items) > budget:
                    return i + 1
        return len(items)

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
        """Run ``fn(item)`` for every item; results in item order. ``on_done(i, result)`` is called as each
        finishes (for progress). The first failure cancels the rest and is raised once the tasks already running
        have stopped (``_wait_stopped``), so what they write is done before the caller cleans up after it."""
        if not items:
            return []
        items = list(items)
        results: list[Any] = [None] * len(items)
        first = 0
        if self._may_inline(resources):
            first = self._run_inline(fn, items, results, on_done, retries)
            if first == len(items):
                return results
        resources = self.placement(resources, f"node {key_prefix!r}: a shard task")
        self.check_resources(resources, f"node {key_prefix!r}: a shard task")
        from distributed import as_completed

        client = self.client()
        tag = os.urandom(4).hex()
        todo = len(items) - first
        limit = todo if max_in_flight is None else max(1, max_in_flight)

        def submit(lo: int, hi: int) -> list[Any]:
            return client.map(
                fn,
                items[lo:hi],
                pure=False,
                retries=retries,
                resources=resources,
                key=[f"{key_prefix}-{i}-{tag}" for i in range(lo, hi)],
            )

        futures = submit(first, first + min(limit, todo))
        every = list(futures)
        index = {f.key: first + i for i, f in enumerate(futures)}
        pending = as_completed(futures)
        submitted = first + len(futures)
        watch = _NoWorkersWatch(client, self.spec.address) if self.spec.address else None
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
        except BaseException as exc:
            client.cancel(every)
            if isinstance(exc, Exception):  # not on Ctrl-C: the user wants out now
                self._wait_stopped(client, {f.key for f in every})
            raise
        finally:
            if watch is not None:
                watch.stop()
        return results

    @staticmethod
    def _wait_stopped(client: Any, keys: set[Any], timeout_s: float = STOP_WAIT_S) -> None:
        """Wait (at most ``timeout_s``) until no worker still executes a task of ``keys``. Cancelling a task that
        already runs does not stop it (a thread cannot be stopped; Dask lets it finish): a shard task would go on
        writing its files and marker after the map has failed, e.g. into the folder of a forced rerun that the
        engine removes on failure. A worker keeps such a task in its ``executing`` set until it ends."""

        def executing(dask_worker: Any) -> list[str]:
            state = dask_worker.state
            return [str(ts.key) for ts in state.executing | state.long_running]

        wanted = {str(k) for k in keys}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                running = client.run(executing)
            except Exception:  # noqa: BLE001 - a worker gone, an old Dask: nothing to wait for here
                return
            if not wanted.intersection(k for ks in running.values() for k in ks):
                return
            time.sleep(0.1)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None
