"""Run any flow from the command line: its pydantic parameters become ``--options``.

``python -m flows.data --help`` lists every field with its default and description, so
a user can run a stage without a Prefect server. Nested models become dotted options
(``--augment.copies 3``); list, tuple and dict fields take JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_JSON_ORIGINS = (list, tuple, dict, set, frozenset)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _needs_json(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in _JSON_ORIGINS or annotation in _JSON_ORIGINS or _is_model(annotation):
        return True  # an optional model (``X | None``) is given whole, as JSON
    return any(_needs_json(arg) for arg in typing.get_args(annotation))


def _add_fields(parser: argparse.ArgumentParser, model: type[BaseModel], prefix: str) -> None:
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        if _is_model(field.annotation):
            _add_fields(parser, field.annotation, f"{dotted}.")
            continue
        if field.is_required():
            shown = "required"
        else:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump(mode="json")
            value = json.dumps(default) if _needs_json(field.annotation) else default
            shown = f"default: {value}"
        parser.add_argument(
            f"--{dotted.replace('_', '-')}",
            dest=dotted,
            default=argparse.SUPPRESS,
            required=field.is_required(),
            metavar="JSON" if _needs_json(field.annotation) else "VALUE",
            help=f"{field.description or ''} ({shown})",
        )


def _nest(flat: dict[str, str], model: type[BaseModel]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, raw in flat.items():
        parts = dotted.split(".")
        target, owner = nested, model
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            owner = owner.model_fields[part].annotation
        annotation = owner.model_fields[parts[-1]].annotation
        target[parts[-1]] = json.loads(raw) if _needs_json(annotation) else raw
    return nested


# ``--train.imgsz 320`` changes one field of the recipe (``train_changes``) and keeps the rest.
CHANGES = "train_changes"


def _recipe_changes(rest: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    tokens = list(rest)
    while tokens:
        option = tokens.pop(0)
        if not option.startswith("--train."):
            parser.error(f"unrecognized argument: {option}")
        name, _, raw = option.removeprefix("--train.").partition("=")
        if not raw:
            if not tokens:
                parser.error(f"{option} needs a value")
            raw = tokens.pop(0)
        try:
            value = json.loads(raw)  # numbers, booleans, null, JSON lists
        except json.JSONDecodeError:
            value = raw  # a plain word, e.g. a model file name
        changes[name.replace("-", "_")] = value
    return changes


def parse_params(model: type[M], argv: Sequence[str] | None = None, prog: str | None = None) -> M:
    """Parse command-line options into a validated parameter model.

    Args:
        model: The flow's pydantic parameter model.
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name shown in ``--help``.

    Returns:
        The validated model; unknown or invalid values exit with a usage message.
    """
    parser = argparse.ArgumentParser(prog=prog, description=model.__doc__)
    _add_fields(parser, model, "")
    if CHANGES in model.model_fields:
        parser.epilog = "--train.FIELD VALUE changes one field of the recipe: --train.imgsz 320"
    parsed, rest = parser.parse_known_args(argv)
    nested = _nest(vars(parsed), model)
    changes = _recipe_changes(rest, parser) if CHANGES in model.model_fields else {}
    if rest and not changes:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if changes:
        nested[CHANGES] = {**nested.get(CHANGES, {}), **changes}
    try:
        return model.model_validate(nested)
    except (ValueError, json.JSONDecodeError) as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def run_cli(flow: Callable[[M], Any], model: type[M], prog: str) -> None:
    """Parse options, run the flow, print its result as JSON."""
    params = parse_params(model, prog=prog)
    result = flow(params)
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
