"""Flows from the command line: options from pydantic parameters, nested and JSON values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import parse_params
from flows.data import DataParams
from flows.pipeline import PipelineParams
from flows.predict import PredictParams
from flows.train_params import TrainParams
from tasks.core.records import DatasetRef
from tasks.training.profiles import get_profile

REPO = Path(__file__).resolve().parents[2]


def test_nested_options_and_json_values():
    params = parse_params(
        PipelineParams,
        [
            "--profile", "smoke",
            "--data.augment.copies", "2",
            "--gate.alpha", "0.01",
            "--train", '{"model": "yolo11n.yaml", "epochs": 3}',
        ],
    )  # fmt: skip
    assert params.profile == "smoke" and params.data.augment.copies == 2
    assert params.gate.alpha == 0.01
    assert params.train is not None and params.train.epochs == 3
    assert params.data.source is None  # untouched fields keep their defaults


def test_list_fields_take_json():
    params = parse_params(PredictParams, ["--inputs", '["a/", "b/*.jpg"]', "--conf", "0.5"])
    assert params.inputs == ["a/", "b/*.jpg"] and params.conf == 0.5


def test_invalid_value_exits_with_usage(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        parse_params(DataParams, ["--augment.max-rotate-deg", "90"])
    assert exit_info.value.code == 2
    assert "max_rotate_deg" in capsys.readouterr().err


def test_help_lists_options_with_defaults():
    out = subprocess.run(
        [sys.executable, "-m", "flows.pipeline", "--help"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "--profile" in out and "--data.augment.copies" in out and "(default: cpu)" in out


def test_the_gate_reads_valid_at_a_level_between_0_and_1(capsys: pytest.CaptureFixture[str]):
    assert parse_params(PipelineParams, []).gate.alpha == 0.05
    with pytest.raises(SystemExit):
        parse_params(PipelineParams, ["--gate.alpha", "1.5"])  # would promote on noise
    assert "alpha" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_params(PipelineParams, ["--gate.metric", "test_top1"])  # test never picks


def test_one_field_of_the_profile_changes_and_the_rest_stays():
    params = parse_params(
        PipelineParams,
        ["--profile", "cpu", "--train.imgsz", "320", "--train.classifier.time-hours=0.25"],
    )
    assert params.train_changes == {"imgsz": 320, "classifier.time_hours": 0.25}
    recipe, cpu = params.recipe(), get_profile("cpu")
    assert recipe.imgsz == 320 and recipe.classifier.time_hours == 0.25
    assert recipe.model_dump(exclude={"imgsz", "classifier"}) == cpu.model_dump(
        exclude={"imgsz", "classifier"}
    )
    assert recipe.classifier.model_dump(exclude={"time_hours"}) == cpu.classifier.model_dump(
        exclude={"time_hours"}
    )
    dataset = DatasetRef(id="x", uri="file:///nowhere")
    train = TrainParams(dataset=dataset, profile="cpu", train_changes=params.train_changes)
    assert train.recipe() == recipe


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--train.imgsize", "320"], "no field 'imgsize'"),
        (["--train.imgsz", "big"], "imgsz"),
        (["--train.nothing.imgsz", "1"], "no section 'nothing'"),
        (["--train.imgsz"], "needs a value"),
        (["--trian.imgsz", "320"], "unrecognized"),
    ],
)
def test_a_bad_change_exits_naming_the_field(argv, problem, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        parse_params(PipelineParams, argv)
    assert exit_info.value.code == 2
    assert problem in capsys.readouterr().err


def test_stdout_carries_the_result_alone(tmp_path: Path) -> None:
    """What a flow prints (a logger made at import, a child process) goes to stderr; the JSON
    result is all of stdout, so `fingerspell pipeline ... > result.json` is valid JSON."""
    script = tmp_path / "noisy.py"
    script.write_text(
        "import logging, subprocess, sys\n"
        "from pydantic import BaseModel\n"
        "from flows.cli import run_cli\n"
        "noise = logging.StreamHandler(sys.stdout)  # as ultralytics binds it at import\n"
        "class P(BaseModel):\n"
        "    count: int = 1\n"
        "def flow(params):\n"
        "    print('epoch 1/1')\n"
        "    noise.stream.write('a logger line\\n'); noise.stream.flush()\n"
        "    subprocess.run([sys.executable, '-c', 'print(\"a child process\")'], check=True)\n"
        "    return {'count': params.count}\n"
        "run_cli(flow, P, 'noisy', ['--count', '3'])\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == {"count": 3}
    for line in ("epoch 1/1", "a logger line", "a child process"):
        assert line in done.stderr
