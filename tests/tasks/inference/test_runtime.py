"""One way to open an onnxruntime session: thread caps and providers, on a tiny ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.inference import runtime
from tasks.inference.runtime import MAX_THREADS, open_session


@pytest.fixture(scope="module")
def identity_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-node graph (y = x) written with onnx's helpers."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    path = tmp_path_factory.mktemp("onnx") / "identity.onnx"
    onnx.save(model, str(path))
    return path


def test_the_session_runs_and_caps_its_threads(
    identity_onnx: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 64)
    session = open_session(identity_onnx)
    options = session.get_session_options()
    assert options.intra_op_num_threads == MAX_THREADS and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    x = np.arange(3, dtype=np.float32).reshape(1, 3)
    assert np.array_equal(session.run(None, {"x": x})[0], x)
    assert session.get_providers()[-1] == "CPUExecutionProvider"


def test_explicit_threads_and_spinning(identity_onnx: Path):
    session = open_session(identity_onnx, threads=1, spin=True)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_cuda_comes_first_when_onnxruntime_has_it(
    identity_onnx: Path, monkeypatch: pytest.MonkeyPatch
):
    import onnxruntime as ort

    asked: list[list[str]] = []

    def fake_session(path: str, options: object, providers: list[str]) -> object:
        asked.append(providers)
        return object()

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "x"])
    monkeypatch.setattr(ort, "InferenceSession", fake_session)
    open_session(identity_onnx)
    assert asked == [["CUDAExecutionProvider", "CPUExecutionProvider"]]
