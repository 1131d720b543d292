"""Which node failures a node's ``retries:`` retries: a transient fault (a dropped connection, a timeout, a worker
lost) may pass on the next attempt; a failure that the same inputs, params and code meet again may not, so it fails
the node at once with its own message instead of after every retry and its pauses.

Not retried (``permanent_reason`` says which, from the exception's class and its bases):

- the run's own verdicts: ``AllQuarantinedError`` (its stored output would be reused and fail again) and
  ``MissingInputError`` (an input node with no stored output, no usable rows, or a stored shard gone);
- a missing or unusable file: ``FileNotFoundError`` (an input pattern that matches nothing, a model path),
  ``PermissionError``, ``IsADirectoryError``, ``NotADirectoryError`` (as ``data_pipes.io.remote.with_retries``
  treats them);
- config and validation errors: the pipeline's (``SpecError``, ``YamlSyntaxError``, ``SelectionError``, an unknown
  kind, a cluster spec), pydantic's ``ValidationError``, and the kinds' own setup errors (a datatrove step that
  cannot be built or whose asset is not cached, an unknown file format, a training or eval stage given the wrong
  inputs), and a param found wrong for the input's data at run time (``ParamError``: a filter expression's
  column the input lacks, a datatrove step's ``text_column``, ``heuristic_filters``' ``lang_column`` ...).

The kinds' classes are named by their qualified names, so checking a failure imports none of their modules.
"""

from __future__ import annotations

from typing import Any

#: exception classes (``module.QualName``) a retry cannot help; a subclass of one is not retried either
PERMANENT = frozenset(
    {
        "flows.errors.AllQuarantinedError",
        "flows.errors.MissingInputError",
        "flows.errors.SpecError",
        "flows.errors.SelectionError",
        "flows.yaml_source.YamlSyntaxError",
        "flows.placement.ClusterSpecError",
        "tasks.registry.UnknownKindError",
        "tasks.param_error.ParamError",
        "tasks._train_run.StageInputError",
        "tasks._eval_select.EvalInputError",
        "tasks.loaded_code.StaleWorkerCodeError",  # the workers must be restarted first
        "flows.store_remote.WorkerStoreAccessError",  # the worker's credentials or endpoint must change first
        "flows.executor.SchedulerUnreachableError",
        "data_pipes.datatrove_resolve.StepError",  # AssetNotCached, LocalAssetMissing too
        "data_pipes.io.paths.UnknownFormatError",
        "pydantic_core._pydantic_core.ValidationError",
        "builtins.FileNotFoundError",  # data_pipes.dedup.semdedup_model.ModelNotFoundError too
        "builtins.PermissionError",
        "builtins.IsADirectoryError",
        "builtins.NotADirectoryError",
    }
)


def permanent_reason(exc: BaseException) -> str | None:
    """The name of the class in ``PERMANENT`` that ``exc`` is (itself or by a base), or None: worth a retry."""
    for cls in type(exc).__mro__:
        if f"{cls.__module__}.{cls.__qualname__}" in PERMANENT:
            return cls.__name__
    return None


def with_article(name: str) -> str:
    """``name`` after "a" or "an", by its first letter (a class name: "an AllQuarantinedError", "a SpecError")."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def worth_retrying(task: Any, _run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn`` of a node's task: False for a failure in ``PERMANENT`` (said once in the
    task's log), True for anything else, including a failed state without its exception."""
    exc = state.data if isinstance(state.data, BaseException) else None
    reason = permanent_reason(exc) if exc is not None else None
    if reason is None:
        return True
    try:
        from prefect.logging import get_run_logger

        get_run_logger().warning(
            "node %r: not retried (retries: %s): %s fails again on every attempt",
            getattr(task, "name", "?"),
            getattr(task, "retries", "?"),
            with_article(reason),
        )
    except Exception:  # noqa: BLE001 - no run context to log in: the decision stands without the line
        pass
    return False
