"""The ``fingerspell`` command: one sub-command per flow, plus ``app`` and ``serve``.

``fingerspell pipeline --profile smoke`` is ``python -m flows.pipeline --profile smoke``: the
options after the sub-command go to :func:`flows.cli.run_cli` unchanged, so ``--help`` lists
the flow's own options. A flow's module is imported only when its sub-command runs, so
``fingerspell --help`` answers at once and the app starts without importing torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict

from flows.cli import run_cli

PROG = "fingerspell"


class FlowCommand(BaseModel):
    """A sub-command that runs one flow: where its function and its parameter model live."""

    model_config = ConfigDict(frozen=True)

    flow: str  # "module:attribute"
    params: str  # "module:attribute"
    summary: str


FLOWS: dict[str, FlowCommand] = {
    "data": FlowCommand(
        flow="flows.data:data_flow",
        params="flows.data:DataParams",
        summary="acquire, validate and augment the dataset",
    ),
    "train": FlowCommand(
        flow="flows.train:train_flow",
        params="flows.train_params:TrainParams",
        summary="train, evaluate and register a model on a built dataset",
    ),
    "pipeline": FlowCommand(
        flow="flows.pipeline:pipeline_flow",
        params="flows.pipeline:PipelineParams",
        summary="data -> train -> evaluate -> register in one run (--profile smoke: minutes)",
    ),
    "predict": FlowCommand(
        flow="flows.predict:predict_flow",
        params="flows.predict:PredictParams",
        summary="recognize letters in images and folders with a registered model",
    ),
    "personalize": FlowCommand(
        flow="flows.personalize:personalize_flow",
        params="flows.personalize:PersonalizeParams",
        summary="fine-tune the champion on one learner's captures",
    ),
    "trials": FlowCommand(
        flow="flows.trials:trials_flow",
        params="flows.trials:TrialsParams",
        summary="train recipe trials as runs of a deployment; valid-only summary from MLflow",
    ),
}
OTHERS: dict[str, str] = {
    "app": "start the web app on http://127.0.0.1:8501 (needs the [app] extra)",
    "serve": "Prefect + MLflow servers, the local deployments and a worker (a checkout only)",
}

# Every setting of .streamlit/config.toml as a flag, for an install started outside the
# checkout (Streamlit reads that file from the working directory only); a list is one flag per
# value. tests/flows/test_console.py holds the two to each other, both ways: the protections
# (allowed hosts, error details) must not stay behind in the checkout. Options given after
# `fingerspell app` come later and win.
APP_FLAGS: tuple[str, ...] = (
    "--server.address=127.0.0.1",
    "--server.headless=true",
    "--server.maxUploadSize=10",
    "--server.runOnSave=false",
    "--server.fileWatcherType=none",
    "--server.allowedHosts=localhost",
    "--server.allowedHosts=127.0.0.1",
    "--server.allowedHosts=::1",
    "--runner.postScriptGC=false",
    "--browser.gatherUsageStats=false",
    "--client.toolbarMode=minimal",
    "--client.showErrorDetails=type",
)


def _usage() -> str:
    """The top-level help: every sub-command with one line about it."""
    width = max(map(len, [*FLOWS, *OTHERS]))
    lines = [
        f"usage: {PROG} [-h] [--version] COMMAND [OPTIONS]",
        "",
        "Recognize the ASL fingerspelling alphabet: Prefect flows, YOLO, MLflow, Streamlit.",
        "",
        "flows (options as in `python -m flows.NAME`; `fingerspell COMMAND --help` lists them):",
        *(f"  {name:<{width}}  {command.summary}" for name, command in FLOWS.items()),
        "",
        "services:",
        *(f"  {name:<{width}}  {summary}" for name, summary in OTHERS.items()),
        "",
        "Settings come from the environment (FINGERSPELL_HOME, FINGERSPELL_DATASET,",
        "MLFLOW_TRACKING_URI, ...): see docs/running.md.",
    ]
    return "\n".join(lines) + "\n"


def _load(reference: str) -> Any:
    """Import ``"module:attribute"`` and return the attribute."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _package_version() -> str:
    try:
        return version("fingerspell")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def replace_process(command: Sequence[str], env: dict[str, str]) -> None:
    """Become ``command`` (exec): Ctrl-C then reaches Streamlit or serve.sh directly.

    serve.sh stops its servers in a trap; run as a child of this process, Python's own
    handling of Ctrl-C could kill it before the trap ran and leave the servers behind.
    """
    os.execvpe(command[0], list(command), env)


def app_command(args: Sequence[str]) -> list[str]:
    """The command line that starts the Streamlit app with this interpreter.

    Raises:
        SystemExit: Streamlit is not installed (the ``[app]`` extra).
    """
    if importlib.util.find_spec("streamlit") is None:
        _fail("the app needs Streamlit: pip install 'fingerspell[app]'")
    script = Path(_load("ui:__file__")).with_name("app.py")
    return [sys.executable, "-m", "streamlit", "run", str(script), *APP_FLAGS, *args]


def serve_command(args: Sequence[str]) -> list[str]:
    """The command line that starts the local stack (deployments/serve.sh).

    Raises:
        SystemExit: Not a source checkout: serve.sh deploys from its prefect.yaml.
    """
    root = Path(__file__).resolve().parents[1]
    script = root / "deployments" / "serve.sh"
    if not (script.is_file() and (root / "prefect.yaml").is_file()):
        _fail(f"serve runs from a source checkout (deployments/serve.sh, prefect.yaml), not {root}")
    return ["bash", str(script), *args]


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command.

    Args:
        argv: Arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 2 without a command (other usage errors exit with status 2).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        (sys.stdout if args else sys.stderr).write(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        sys.stdout.write(f"{PROG} {_package_version()}\n")
        return 0
    name, rest = args[0], args[1:]
    if name in FLOWS:
        command = FLOWS[name]
        run_cli(_load(command.flow), _load(command.params), f"{PROG} {name}", rest)
        return 0
    if name == "app":
        replace_process(app_command(rest), dict(os.environ))
    elif name == "serve":
        # serve.sh runs prefect and mlflow from $BIN: this interpreter's, not ./.venv's.
        env = {**os.environ, "BIN": str(Path(sys.executable).parent)}
        replace_process(serve_command(rest), env)
    else:
        choices = ", ".join([*FLOWS, *OTHERS])
        _fail(f"unknown command {name!r} (choose from {choices}; --help says more)")
    return 0  # reached only when replace_process is replaced (tests)
