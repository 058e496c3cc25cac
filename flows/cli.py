"""Run any flow from the command line: its pydantic parameters become ``--options``.

pydantic-settings' CLI does the parsing: ``python -m flows.data --help`` lists every field
with its default and description, nested models become dotted options
(``--augment.copies 3``), list and dict fields take JSON. One thing is ours: in a model with
``train_changes``, ``--train.FIELD VALUE`` changes one field of the profile's recipe and keeps
the rest (``--train.imgsz 320``, ``--train.classifier.time-hours 0.25``), where
pydantic-settings would build a whole new recipe from defaults; ``--train JSON`` still gives
a whole recipe.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_settings import CliApp, CliSettingsSource

M = TypeVar("M", bound=BaseModel)
CHANGES = "train_changes"
_PREFIX = "--train."


def _usage_error(prog: str, message: str) -> NoReturn:
    """Exit as argparse does on a bad option: status 2, the problem on stderr."""
    sys.stderr.write(f"usage: {prog} [-h] ...\n{prog}: error: {message}\n")
    raise SystemExit(2)


def _split_changes(argv: Sequence[str], prog: str) -> tuple[list[str], dict[str, Any]]:
    """Take the ``--train.FIELD VALUE`` options out of ``argv``: (the rest, the changes)."""
    rest: list[str] = []
    changes: dict[str, Any] = {}
    tokens = list(argv)
    while tokens:
        option = tokens.pop(0)
        if not option.startswith(_PREFIX):
            rest.append(option)
            continue
        name, _, raw = option.removeprefix(_PREFIX).partition("=")
        if not raw:
            if not tokens or tokens[0].startswith("--"):
                _usage_error(prog, f"{option} needs a value")
            raw = tokens.pop(0)
        try:
            value = json.loads(raw)  # numbers, booleans, null, JSON lists
        except json.JSONDecodeError:
            value = raw  # a plain word, e.g. a model file name
        changes[name.replace("-", "_")] = value
    return rest, changes


def parse_params(model: type[M], argv: Sequence[str] | None = None, prog: str | None = None) -> M:
    """Parse command-line options into a validated parameter model.

    Args:
        model: The flow's pydantic parameter model.
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name shown in ``--help``.

    Returns:
        The validated model; unknown or invalid values exit with status 2 and the problem.
    """
    prog = prog or sys.argv[0]
    args = list(sys.argv[1:] if argv is None else argv)
    if CHANGES in model.model_fields:
        args, changes = _split_changes(args, prog)
        if changes:
            args += [f"--{CHANGES.replace('_', '-')}", json.dumps(changes)]
    source: CliSettingsSource[Any] = CliSettingsSource(
        model,  # type: ignore[arg-type]  # accepted at run time: CliApp wraps a BaseModel
        cli_prog_name=prog,
        cli_kebab_case=True,
    )
    try:
        return CliApp.run(model, cli_args=args, cli_settings_source=source)
    except ValidationError as error:
        _usage_error(prog, str(error))


def run_cli(
    flow: Callable[[M], Any], model: type[M], prog: str, argv: Sequence[str] | None = None
) -> None:
    """Parse options, run the flow, print its result as JSON.

    Args:
        flow: The flow (or any callable) that takes the parameter model.
        model: The flow's pydantic parameter model.
        prog: Program name shown in ``--help`` and usage errors.
        argv: Arguments (default: ``sys.argv[1:]``); the ``fingerspell`` command passes the
            ones after its sub-command.
    """
    params = parse_params(model, argv, prog=prog)
    with _output_to_stderr():
        result = flow(params)
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


@contextmanager
def _output_to_stderr() -> Iterator[None]:
    """Send what the flow prints to stderr, so stdout carries the JSON result alone.

    Ultralytics, Prefect and the processes a flow starts write progress to stdout; this is
    done on file descriptor 1 itself, which loggers made at import time and child processes
    share, not only on ``sys.stdout``. ``fingerspell pipeline ... > result.json`` then holds
    valid JSON.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
