"""The `arcflow` console script: hand `arcflow run` to the warm runner of a running `arcflow server` when it can take
it (flows/warm_runner.py), else run the CLI here. Imports only the standard library until it knows which."""

from __future__ import annotations

import os
import sys

# Prefect settings the warm runner was started with may differ from a command's own: those commands run here
_NEUTRAL_PREFECT_VARS = frozenset({"PREFECT_HOME", "PREFECT_PROFILES_PATH"})
_COLD_FLAGS = frozenset({"-v", "--verbose", "--deployment", "--help", "-h"})


def _warm_exit_code(argv: list[str]) -> int | None:
    args = argv[1:]
    if not args or args[0] != "run" or os.environ.get("ARCFLOW_NO_WARM_RUNNER"):
        return None
    if any(a in _COLD_FLAGS or a.startswith("--deployment=") for a in args):
        return None
    if any(k.startswith("PREFECT_") and k not in _NEUTRAL_PREFECT_VARS for k in os.environ):
        return None
    from flows.local_server import configured_api_url, running, state_dir

    if configured_api_url() or running(timeout=2.0) is None:
        return None
    from flows.warm_runner import forward

    return forward(state_dir(), argv, dict(os.environ))


def main() -> None:
    code = _warm_exit_code(sys.argv)
    if code is not None:
        sys.exit(code)
    from flows.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
