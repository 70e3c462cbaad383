"""`planner operations list|get|watch|cancel`: fits and backtests that run on the server as
operations and outlive the command that started them; how `planner fit` waits for one (a
progress bar; Ctrl-C stops the wait, not the work), and `fit` or `backtest --detach`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from clients import formatting as fmt
from clients.client import FIT_TIMEOUT, OperationFailed, PlannerClient, PlannerClientError
from clients.command_base import Output, StillRunning, follow_hints, notice
from clients.law_output import ProgressBar, backtest_output, fit_output, law_json
from clients.results import Backtest, Law, Operation

# -- output ---------------------------------------------------------------------------------


def _law_brief(law: Law) -> dict[str, Any]:
    return {"form": law.form, "version": law.version, "method": law.method, "current": law.current}


def _backtest_brief(result: Backtest) -> dict[str, Any]:
    return {"train_runs": result.train_runs, "test_runs": result.test_runs}


def operation_json(operation: Operation, brief: bool = False) -> dict[str, Any]:
    """The operation as --json prints it; `brief` (lists) names the result instead of holding
    all of it."""
    law, backtest = operation.law, operation.backtest
    return {
        "name": operation.name,
        "kind": operation.kind,
        "family": operation.family,
        "state": operation.state,
        "done": operation.done,
        "progress": asdict(operation.progress),
        "attempt": operation.attempt,
        "create_time": operation.create_time,
        "update_time": operation.update_time,
        "law": None if law is None else _law_brief(law) if brief else law_json(law),
        "backtest": (
            None
            if backtest is None
            else _backtest_brief(backtest)
            if brief
            else backtest_output(backtest, operation.family, None)[0]
        ),
        "error": None if operation.error is None else asdict(operation.error),
    }


def _progress_text(operation: Operation) -> str:
    progress = operation.progress
    if operation.state == "SUCCEEDED" or not progress.stage:
        return "-"
    return f"{progress.stage} {progress.done}/{progress.total}"  # where it is, or it stopped


def _result_text(operation: Operation) -> str:
    if operation.law is not None:
        law = operation.law
        current = "current" if law.current else "not current"
        return f"{law.form} v{law.version} by {law.method} ({current})"
    if operation.backtest is not None:
        result = operation.backtest
        return f"backtest: {result.train_runs} runs fitted, {result.test_runs} predicted"
    if operation.error is not None:
        return f"{operation.error.code}: {operation.error.message}"
    return "-"


def operation_output(operation: Operation) -> Output:
    state = operation.state + (f" (attempt {operation.attempt})" if operation.attempt > 1 else "")
    text = fmt.key_values(
        [
            ("operation", operation.name),
            ("kind", operation.kind),
            ("family", operation.family),
            ("state", state),
            ("progress", _progress_text(operation)),
            ("created", operation.create_time or "-"),
            ("updated", operation.update_time or "-"),
            ("result", _result_text(operation)),
        ]
    )
    return operation_json(operation), text


def result_output(args: argparse.Namespace, operation: Operation) -> Output:
    """A finished operation's answer as its synchronous command prints it."""
    if operation.law is not None:
        return fit_output(args, operation.law)
    if operation.backtest is not None:
        return backtest_output(operation.backtest, operation.family, None)
    return operation_output(operation)  # e.g. a fit whose family was deleted since


# -- waiting and detaching --------------------------------------------------------------------


def detached(args: argparse.Namespace, operation: Operation) -> Output:
    """`--detach`: the operation's name on stdout (the operation with --json), then exit."""
    notice(args, f"{operation.name} is {operation.state}")
    for line in follow_hints(operation.name):
        notice(args, line)
    return operation_json(operation), operation.name


def wait(client: PlannerClient, name: str, timeout: float) -> Operation:
    """Watch the operation to its end with a progress bar on a terminal's stderr. Ctrl-C raises
    StillRunning and a deadline a PlannerClientError saying so; neither stops the operation."""
    progress = ProgressBar() if sys.stderr.isatty() else None
    try:
        return client.watch_operation(name, progress, timeout)
    except KeyboardInterrupt:
        raise StillRunning(name) from None
    except OperationFailed:
        raise
    except PlannerClientError as error:
        if error.code != "DEADLINE_EXCEEDED":
            raise
        message = f"stopped waiting after {timeout:g} s; {name} keeps running"
        message += f" (planner operations watch {name} waits again)"
        raise PlannerClientError(error.code, message, error.violations) from None
    finally:
        if progress is not None:
            progress.finish()


# -- commands -------------------------------------------------------------------------------


def operations_list(client: PlannerClient, args: argparse.Namespace) -> Output:
    operations = list(client.list_operations(args.family))
    data = {"operations": [operation_json(op, brief=True) for op in operations]}
    rows = [
        [
            op.name,
            op.kind,
            op.family,
            op.state,
            _progress_text(op),
            op.create_time,
            _result_text(op),
        ]
        for op in operations
    ]
    headers = ["NAME", "KIND", "FAMILY", "STATE", "PROGRESS", "CREATED", "RESULT"]
    return data, fmt.table(headers, rows)


def operations_get(client: PlannerClient, args: argparse.Namespace) -> Output:
    return operation_output(client.get_operation(args.name))


def operations_watch(client: PlannerClient, args: argparse.Namespace) -> Output:
    return result_output(args, wait(client, args.name, args.wait_timeout))


def operations_cancel(client: PlannerClient, args: argparse.Namespace) -> Output:
    return operation_output(client.cancel_operation(args.name))


def add_detach_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach",
        action="store_true",
        help="start the work as an operation, print its name (with --json the operation) and "
        "exit at once; `planner operations watch NAME` waits for it",
    )


def register(commands: Any) -> None:
    """Add `operations` to the `planner` subparsers."""
    operations = commands.add_parser(
        "operations", help="fits and backtests running on the server: list, get, watch, cancel"
    )
    actions = operations.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every operation, newest first")
    listing.add_argument("--family", help="only this family's operations")
    listing.set_defaults(func=operations_list)
    get = actions.add_parser("get", help="one operation: state, progress, result or error")
    get.add_argument("name", help="operations/<id>")
    get.set_defaults(func=operations_get)
    watch = actions.add_parser(
        "watch", help="wait for an operation with a progress bar, then print its result"
    )
    watch.add_argument("name", help="operations/<id>")
    watch.add_argument(
        "--wait-timeout",
        type=float,
        default=FIT_TIMEOUT,
        help="seconds to wait (the operation keeps running after)",
    )
    watch.set_defaults(func=operations_watch)
    cancel = actions.add_parser(
        "cancel", help="stop an operation (it ends CANCELLED; a finished one is unchanged)"
    )
    cancel.add_argument("name", help="operations/<id>")
    cancel.set_defaults(func=operations_cancel)
