"""The ``fingerspell`` command: help, dispatch to each flow, the app and serve (no training)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flows import console

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_every_flow_and_service(capsys: pytest.CaptureFixture[str]):
    assert console.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*console.FLOWS, "app", "serve"]:
        assert f"\n  {name} " in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]):
    assert console.main([]) == 2
    assert "usage: fingerspell" in capsys.readouterr().err


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        console.main(["trian"])
    assert exit_info.value.code == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]):
    assert console.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("fingerspell ")


def test_every_flow_module_has_the_flow_and_model_named():
    """One sub-command per flow with a ``__main__`` block, and the names resolve."""
    with_main = {
        path.stem
        for path in (REPO / "flows").glob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }
    assert with_main <= set(console.FLOWS)
    for command in console.FLOWS.values():
        assert callable(console._load(command.flow))
        assert issubclass(console._load(command.params), BaseModel)


class _Params(BaseModel):
    profile: str = "cpu"
    copies: int = 0


@pytest.mark.parametrize("name", ["data", "train", "pipeline", "predict", "personalize"])
def test_a_flow_command_runs_its_flow_with_its_options(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    calls: list[tuple[Any, type[BaseModel], str, list[str]]] = []

    def fake_run_cli(flow: Any, model: type[BaseModel], prog: str, argv: list[str]) -> None:
        calls.append((flow, model, prog, argv))

    monkeypatch.setattr(console, "run_cli", fake_run_cli)
    assert console.main([name, "--profile", "smoke"]) == 0
    (flow, model, prog, argv), command = calls[0], console.FLOWS[name]
    assert flow is console._load(command.flow) and model is console._load(command.params)
    assert prog == f"fingerspell {name}" and argv == ["--profile", "smoke"]


def test_options_reach_the_flow_as_a_validated_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The real run_cli parses; only the flow is a stand-in."""
    seen: list[_Params] = []

    def flow(params: _Params) -> dict[str, Any]:
        seen.append(params)
        return {"profile": params.profile}

    stand_in = console.FlowCommand(
        flow=f"{__name__}:_flow_stub", params=f"{__name__}:_Params", summary="test"
    )
    monkeypatch.setitem(console.FLOWS, "stub", stand_in)
    monkeypatch.setattr(sys.modules[__name__], "_flow_stub", flow, raising=False)
    assert console.main(["stub", "--profile", "smoke", "--copies", "2"]) == 0
    assert seen == [_Params(profile="smoke", copies=2)]
    assert '"profile": "smoke"' in capsys.readouterr().out


def test_a_flows_help_is_its_own(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        console.main(["predict", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: fingerspell predict" in out and "--inputs" in out


def test_app_starts_streamlit_like_make_app(monkeypatch: pytest.MonkeyPatch):
    started: list[list[str]] = []
    monkeypatch.setattr(console, "replace_process", lambda command, env: started.append(command))
    assert console.main(["app", "--server.port", "8600"]) == 0
    command = started[0]
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(command[4]) == REPO / "ui" / "app.py"
    assert "--server.address=127.0.0.1" in command
    assert "--browser.gatherUsageStats=false" in command
    assert command[-2:] == ["--server.port", "8600"]  # the user's options come last and win


def test_app_flags_match_the_checkouts_streamlit_config():
    """Outside the checkout the flags stand in for .streamlit/config.toml: they must agree,
    both ways (a setting added to the file, such as allowedHosts, must reach the flags)."""
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    expected = {
        f"--{section}.{key}={item}".lower()
        for section, settings in config.items()
        for key, value in settings.items()
        for item in (value if isinstance(value, list) else [value])
    }
    assert {flag.lower() for flag in console.APP_FLAGS} == expected


def test_app_without_streamlit_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr(console.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as exit_info:
        console.app_command([])
    assert exit_info.value.code == 2
    assert "fingerspell[app]" in capsys.readouterr().err


def test_serve_runs_serve_sh_with_this_interpreters_tools(monkeypatch: pytest.MonkeyPatch):
    started: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(
        console, "replace_process", lambda command, env: started.append((command, env))
    )
    assert console.main(["serve"]) == 0
    command, env = started[0]
    assert command == ["bash", str(REPO / "deployments" / "serve.sh")]
    assert env["BIN"] == str(Path(sys.executable).parent)


def test_python_dash_m_flows_is_the_same_command():
    out = subprocess.run(
        [sys.executable, "-m", "flows", "--help"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert out.startswith("usage: fingerspell")


def test_the_console_script_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["fingerspell"] == "flows.console:main"
