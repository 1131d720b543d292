"""`arcflow run` and the store lock: a second run on a busy store fails at once, before Prefect starts, or queues with
`--wait`; short runs (queued, fully cached) end without Prefect shutdown tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _pipeline_util import write_corpus, write_pipeline

from flows.ephemeral_api import LOG_NAME as API_LOG
from flows.store import Store
from tests._prefect_home import seed_prefect_home

REPO = Path(__file__).resolve().parents[2]
NOISE = ("Traceback", "CancelledError", "Error flushing events", "Exception in callback")
# a source and twenty filters over it: a cached run of many nodes is what left Prefect's shutdown tracebacks
NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"]}},
    **{
        f"long{i:02d}": {"uses": "filter", "inputs": ["raw"], "params": {"expr": f"length(text) > {100 + i}"}}
        for i in range(20)
    },
}


def _env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # the ephemeral API, no local server record; its database already migrated (tests/_prefect_home.py)
    env["PREFECT_HOME"] = str(seed_prefect_home(tmp_path / "prefect-home"))
    return {**env, **(extra or {})}


def _arcflow(args: list[str], tmp_path: Path, extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env=_env(tmp_path, extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(400)
def test_busy_store_fails_before_prefect_or_queues_with_wait(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=3)
    pipeline = write_pipeline(tmp_path, NODES)
    store = Store(str(tmp_path / ".arcflow"))

    with store.lock():
        busy = _arcflow(["run", "-f", str(pipeline)], tmp_path)
        out, errs = busy.communicate(timeout=120)
        assert busy.returncode == 1, out + errs
        assert "is in use by arcflow pid" in errs and "--wait" in errs, errs
        assert not any(n in out + errs for n in NOISE), errs
        # Prefect never started: no run was recorded in the store, no ephemeral API was started
        assert not (tmp_path / ".arcflow" / "runs").exists()
        assert not (tmp_path / "prefect-home" / API_LOG).exists()

        queued = _arcflow(["run", "--wait", "-f", str(pipeline)], tmp_path)
        deadline = time.monotonic() + 120
        line = ""
        while "queued" not in line:  # the first line it prints says it waits
            line = queued.stderr.readline()
            assert line or queued.poll() is None, "arcflow run --wait exited without queueing"
            assert time.monotonic() < deadline, "arcflow run --wait did not say it queued"
        assert queued.poll() is None
    out, errs = queued.communicate(timeout=300)
    assert queued.returncode == 0, out + errs
    assert "done" in out and f"{len(NODES)} computed" in out, out
    assert not any(n in out + errs for n in NOISE), out + errs

    # the ephemeral API's own output (here at INFO: its start and shutdown lines, whatever its services log when
    # they are cancelled at exit) goes to its log file, never to the terminal
    cached = _arcflow(["run", "-f", str(pipeline)], tmp_path, {"PREFECT_SERVER_LOGGING_LEVEL": "INFO"})
    out, errs = cached.communicate(timeout=300)
    assert cached.returncode == 0, out + errs
    assert f"{len(NODES)} reused, 0 computed" in out, out
    assert not any(n in out + errs for n in NOISE), out + errs
    assert "Application startup complete" not in out + errs, errs
    log = (tmp_path / "prefect-home" / API_LOG).read_text()
    assert log.count("arcflow run (pid ") == 2, log  # the queued run's and the cached run's
    assert "Application startup complete" in log.split("arcflow run (pid ")[-1], log


@pytest.mark.timeout(400)
def test_failed_run_names_each_failed_node_with_its_line_and_error(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=2)
    pipeline = write_pipeline(
        tmp_path,
        {
            "raw": {"uses": "files", "params": {"paths": ["data"]}},
            "bad": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(no_such_column) > 1"}},
            "after_bad": {"uses": "filter", "inputs": ["bad"], "params": {"expr": "length(text) > 1"}},
        },
    )
    lines = pipeline.read_text().splitlines()
    bad_line, after_line = lines.index("  bad:") + 1, lines.index("  after_bad:") + 1

    run = _arcflow(["run", "-f", str(pipeline)], tmp_path)
    out, errs = run.communicate(timeout=300)

    assert run.returncode == 1, out + errs
    summary = errs[errs.index("run failed: ") :].splitlines()
    assert summary[0] == "run failed: 1 node(s) failed:", errs
    expr_line = lines.index("      expr: length(no_such_column) > 1") + 1
    assert summary[1].startswith(
        f"  bad ({pipeline}:{bad_line}): ParamError: {pipeline}:{expr_line}: nodes.bad.params.expr: filter expression "
    ), errs
    assert "'no_such_column'" in summary[1] and "does not have" in summary[1], errs
    # the node downstream of the failure did not fail on its own: it is listed as skipped, without a reason of its own
    assert summary[2:] == [
        "1 node(s) skipped:",
        f"  after_bad ({pipeline}:{after_line}): skipped, upstream failed: bad",
    ]
    assert "Traceback" not in errs[errs.index("run failed: ") :]


@pytest.mark.timeout(400)
def test_a_user_error_is_said_in_full_once_without_tracebacks(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jsonl").write_text('{"id": "a1", "text": \n{not json}\n')
    pipeline = write_pipeline(tmp_path, {"broken": {"uses": "files", "params": {"paths": ["broken"]}}})

    run = _arcflow(["run", "-f", str(pipeline)], tmp_path)
    out, errs = run.communicate(timeout=300)

    assert run.returncode == 1, out + errs
    final = errs[errs.index("run failed: ") :].splitlines()
    assert (
        final[1].startswith(f"  broken ({pipeline}:") and "AllQuarantinedError: all 2 input rows" in final[1]
    )
    # the whole message (the quarantine's folder, the polars command) once, in the run's last lines
    assert errs.count("pl.read_parquet(") == 1 and "pl.read_parquet(" in final[1], errs
    assert errs.count("arcflow run --from broken") == 1, errs
    assert "Traceback" not in errs and "\\'" not in errs, errs
    # Prefect's lines name the node and the error, shortened
    assert "Task run failed with exception: AllQuarantinedError: all 2 input rows were quarantined" in errs
    assert "Encountered exception during execution: NodeFailedError: 1 node(s) failed: …" in errs, errs


def test_prefect_console_lines_short_for_user_errors_full_with_verbose() -> None:
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    from flows.errors import MissingInputError
    from flows.prefect_flow import quiet_prefect_shutdown

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except type(exc):
            return logging.getLogger("prefect.task_runs").makeRecord(
                "prefect.task_runs", logging.ERROR, __file__, 1,
                f"Task run failed with exception: {exc!r}", (), sys.exc_info(),
                extra={"task_run_name": "b", "task_run_id": "b-1", "flow_run_name": "t", "flow_run_id": "t-1"},
            )  # fmt: skip

    handler = next(
        h for lg in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
        for h in getattr(lg, "handlers", []) if isinstance(h, PrefectConsoleHandler)
    )  # fmt: skip
    user = record(
        MissingInputError("node 'b' needs input 'a', which has no stored output; run `arcflow run`")
    )
    bug = record(KeyError("it's a bug"))
    with quiet_prefect_shutdown(verbose=True):
        assert "Traceback" in handler.format(user) and "MissingInputError(\"node 'b'" in handler.format(user)
    with quiet_prefect_shutdown(verbose=False):
        text = handler.format(user)
        assert "MissingInputError: node 'b' needs input 'a', which has no stored output …" in text
        assert "Traceback" not in text and "arcflow run" not in text
        text = handler.format(bug)
        assert 'KeyError: "it\'s a bug"' in text and "Traceback" in text
    assert "Traceback" in handler.format(user)  # the handler's own formatter again
