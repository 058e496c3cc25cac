"""One way to open an onnxruntime session, tuned for a small shared CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MAX_THREADS = 4  # YOLO11n at batch 1 stops scaling past a few cores; more only steals CPU


def open_session(path: Path, threads: int | None = None, spin: bool = False) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``, CUDA first when onnxruntime has it.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads; default ``os.cpu_count()`` capped at :data:`MAX_THREADS`.
        spin: Let idle threads busy-wait for work (see ``Recognizer.load``).

    Returns:
        The session. ``run`` is safe to call from several threads at once.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, MAX_THREADS)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)
