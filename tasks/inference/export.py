"""Make the files the recognizer runs: an ONNX export of YOLO weights and its int8 variant."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tasks.core.files import build_file
from tasks.inference.yolo_decode import preprocess

log = logging.getLogger(__name__)

# 17 is well inside what onnxruntime 1.20+ and its quantizer handle; newer buys YOLO nothing.
ONNX_OPSET = 17


def export_onnx(weights: Path, imgsz: int, out_dir: Path) -> Path:
    """Export YOLO ``.pt`` weights to a static ``out_dir/model.onnx`` (batch 1, imgsz x imgsz).

    Runs offline: ultralytics may check requirements but must never pip-install them.
    The export embeds ultralytics' metadata (names, imgsz, stride) in the ONNX file.

    Args:
        weights: Ultralytics checkpoint (``best.pt``).
        imgsz: Square input side in pixels, a multiple of the model stride (32).
        out_dir: Folder for ``model.onnx``; created if missing, an existing file is replaced
            atomically.

    Returns:
        Path of the exported model.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    from ultralytics import YOLO
    from ultralytics.utils import checks

    from tasks.training.weights import enable_safe_load

    enable_safe_load()

    # The env var is read once at import; if ultralytics came in earlier, switch it off here.
    autoinstall, checks.AUTOINSTALL = checks.AUTOINSTALL, False
    try:
        with tempfile.TemporaryDirectory(prefix="fingerspell-export-") as tmp:
            # Ultralytics writes beside the weights; a private copy keeps their folder untouched.
            local = Path(tmp) / "model.pt"
            shutil.copyfile(weights, local)
            model = _open(YOLO, local, weights)
            _last_axis_dfl(model.model)
            exported = model.export(
                format="onnx", imgsz=imgsz, dynamic=False, simplify=True, opset=ONNX_OPSET
            )
            # Copied beside the target, then renamed over it: a reader (another flow logging
            # the same run folder's model) sees the old file or the new one, never a half.
            target = out_dir / "model.onnx"
            with build_file(target) as staged:
                shutil.copyfile(exported, staged)
    finally:
        checks.AUTOINSTALL = autoinstall
    return target


def _last_axis_dfl(model: Any) -> None:
    """Swap the detect head's DFL for the same integral with its softmax on the last axis.

    Ultralytics' DFL takes a softmax over axis 1 of a (1, 16, 4, N) tensor, which onnxruntime
    runs as a slow strided kernel: 1.5 ms of a 10 ms int8 inference at 320 px. Softmax over the
    last axis and a dot product with 0..15 give the same numbers in a fraction of that.
    """
    import torch
    from ultralytics.nn.modules.block import DFL

    class LastAxisDFL(torch.nn.Module):
        def __init__(self, bins: int) -> None:
            super().__init__()
            self.c1 = bins
            self.register_buffer("bins", torch.arange(bins, dtype=torch.float32))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, _, a = x.shape
            return (x.view(b, 4, self.c1, a).transpose(2, 3).softmax(-1) * self.bins).sum(-1)

    head = model.model[-1]
    if isinstance(getattr(head, "dfl", None), DFL):
        head.dfl = LastAxisDFL(head.dfl.c1)


def _decode_head_nodes(model: object) -> list[str]:
    """Nodes of the detect head after its last convolutions (box decode, sigmoid, concat).

    The output concatenates pixel coordinates (0..imgsz) with class scores (0..1); one int8
    scale for both would flatten every score, so this tail must stay in float.
    """
    graph = model.graph  # type: ignore[attr-defined]
    producer = next(n for n in graph.node if graph.output[0].name in n.output)
    prefix = "/".join(producer.name.split("/")[:2]) + "/"  # e.g. "/model.23/"
    branch = re.compile(re.escape(prefix) + r"cv[23]\.")
    return [n.name for n in graph.node if n.name.startswith(prefix) and not branch.match(n.name)]


def quantize_int8(onnx_path: Path, calibration_images: Sequence[Path], out: Path) -> Path:
    """Statically quantize a YOLO ONNX export to int8 (QDQ), calibrated on real images.

    Activations are uint8 and weights int8 per channel with a 7-bit range, which avoids the
    saturation of AVX2 int8 kernels on CPUs without VNNI. Calibration tensors come from the
    recognizer's own preprocessing so int8 ranges match what it will see at inference.

    Args:
        onnx_path: fp32 model from :func:`export_onnx`.
        calibration_images: Images to calibrate on (50-200 varied frames is plenty).
        out: File to write, conventionally ``model.int8.onnx`` beside the fp32 model.

    Returns:
        ``out``. Its metadata is the fp32 model's plus ``quantization: int8``.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    model = onnx.load(str(onnx_path))
    size = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:])
    input_name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = self._read()

        def _read(self) -> Iterator[dict[str, np.ndarray]]:
            for path in calibration_images:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"cannot read calibration image {path}")
                tensor, _ = preprocess(image, size)  # type: ignore[arg-type]
                yield {input_name: tensor}

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    if not calibration_images:
        raise ValueError("quantize_int8 needs calibration images")
    with (
        tempfile.TemporaryDirectory(prefix="fingerspell-quant-") as tmp,
        build_file(out) as staged,  # written beside ``out``, renamed over it when complete
    ):
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        quantize_static(
            str(prepared),
            str(staged),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            nodes_to_exclude=_decode_head_nodes(onnx.load(str(prepared))),
            calibrate_method=CalibrationMethod.MinMax,
        )
        quantized = onnx.load(str(staged))
        del quantized.metadata_props[:]
        for prop in model.metadata_props:
            quantized.metadata_props.add(key=prop.key, value=prop.value)
        quantized.metadata_props.add(key="quantization", value="int8")
        onnx.save(quantized, str(staged))
    log.info("quantized %s to %s on %d images", onnx_path, out, len(calibration_images))
    return out


def _open(yolo: Any, local: Path, weights: Path) -> Any:
    """Load the private copy; a damaged file is reported by its own name, not the copy's."""
    try:
        return yolo(str(local))
    except Exception as error:  # ultralytics' own message names the temp copy
        if not zipfile.is_zipfile(local):  # torch.save writes a zip; a cut-off one has none
            reason = "not a complete checkpoint archive (truncated or not a .pt)"
        else:
            first = (str(error).strip().splitlines() or [""])[0]
            reason = f"cannot be loaded ({type(error).__name__}: {first})"
        raise OSError(f"{weights}: {reason}") from error
