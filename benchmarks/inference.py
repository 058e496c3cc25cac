"""Per-image latency of ultralytics' predict against our recognizer, fp32 and int8, per size.

Same weights, same decoded test images, batch 1, on this machine's CPU. For each size the
weights are exported (and quantized) once, then every variant runs over all images in several
interleaved rounds so that load from other processes spreads over all of them alike.

    .venv/bin/python benchmarks/inference.py                      # trains a smoke model first
    .venv/bin/python benchmarks/inference.py --weights best.pt
    .venv/bin/python benchmarks/inference.py --model-uri models:/asl-detector@champion
    .venv/bin/python benchmarks/inference.py --weights hand.pt --classifier classifier.onnx

With ``--classifier`` the weights are a two-stage model's hand detector, and two more variants
run the whole two-stage recognizer (detector at each size, then the letter classifier on the
hand's crop): ``two_stage_fp32`` and ``two_stage_int8`` (int8 detector, fp32 classifier).
Several ``--classifier`` files make an ensemble (``TrainConfig.extra_classifiers``). With the
classifier's ultralytics weights as well (``--classifier-weights``), ``ultralytics_two_stage_pt``
is the same two-stage model through ultralytics alone: ``YOLO.predict`` on the detector's
``.pt``, then on the classifier's ``.pt`` for each hand's crop; it is the baseline the
two-stage recognizer is compared with. ``--model-uri`` of a two-stage model finds all of these
in the model's folder.

Writes ``benchmarks/results/inference.json``: {size: {variant: {"median_ms", "p95_ms", ...}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
for key, value in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"}.items():
    os.environ.setdefault(key, value)
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "fingerspell-yolo"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from tasks.inference.bundle import assemble, crop_settings, extra_classifiers, is_two_stage  # noqa: E402
from tasks.inference.crop_classifier import square_crop  # noqa: E402
from tasks.inference.export import export_onnx, quantize_int8  # noqa: E402
from tasks.inference.recognizer import Recognizer  # noqa: E402

VARIANTS = ("ultralytics_pt", "ultralytics_onnx", "recognizer_fp32", "recognizer_int8")
TWO_STAGE = ("ultralytics_two_stage_pt", "two_stage_fp32", "two_stage_int8")
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "asl-letters"


def smoke_weights(dataset: Path, work: Path) -> Path:
    """Train YOLO11n from scratch briefly at 320 px with the project's own training task.

    Latency does not depend on how well a model is trained, so this stands in when no real
    weights are given.
    """
    from tasks.data.acquire import acquire
    from tasks.training.detector import TrainConfig, train

    ref = acquire(str(dataset), work / "datasets")
    config = TrainConfig(
        model="yolo11n.yaml", imgsz=320, epochs=1, batch=16, fraction=0.1, workers=0,
        device="cpu", patience=0, overrides={"plots": False, "val": False},
    )  # fmt: skip
    return train(ref.data_yaml, ref.id, config, work / "runs").best


def measure(
    runners: dict[str, Callable[[np.ndarray], object]],
    frames: list[np.ndarray],
    warmup: int,
    rounds: int,
) -> dict[str, dict[str, float | list[float]]]:
    """Time each runner on every frame, rounds interleaved across runners."""
    samples: dict[str, list[list[float]]] = {name: [] for name in runners}
    for run in runners.values():
        for frame in frames[:warmup]:
            run(frame)
    for _ in range(rounds):
        for name, run in runners.items():
            times = []
            for frame in frames:
                start = time.perf_counter()
                run(frame)
                times.append((time.perf_counter() - start) * 1e3)
            samples[name].append(times)
    stats: dict[str, dict[str, float | list[float]]] = {}
    for name, per_round in samples.items():
        every = np.concatenate(per_round)
        stats[name] = {
            "median_ms": round(float(np.median(every)), 2),
            "p95_ms": round(float(np.percentile(every, 95)), 2),
            "round_medians_ms": [round(float(np.median(r)), 2) for r in per_round],
        }
    return stats


def _two_stage_parts(folder: Path, args: argparse.Namespace) -> None:
    """Point ``args`` at the classifier(s), crop settings and classifier weights in ``folder``."""
    args.classifier = [folder / "classifier.onnx", *extra_classifiers(folder)]
    args.crop_pad, args.crop_mirror = crop_settings(folder)
    if (folder / "classifier.pt").is_file() and len(args.classifier) == 1:
        args.classifier_weights = args.classifier_weights or folder / "classifier.pt"


def _ultralytics_two_stage(
    detector: Any, classifier: Any, size: int, pad: float
) -> Callable[[np.ndarray], object]:
    """The two-stage model run by ultralytics alone: detect hands, classify each hand's crop."""
    crop_side = int(classifier.model.args.get("imgsz", 128))

    def run(frame: np.ndarray) -> object:
        hands = detector.predict(frame, imgsz=size, verbose=False)[0].boxes.xyxy.tolist()
        crops = [square_crop(frame, tuple(box), pad, crop_side) for box in hands]
        return [classifier.predict(c, imgsz=crop_side, verbose=False)[0].probs for c in crops]

    return run


def top_agreement(a: Recognizer, b: Recognizer, frames: list[np.ndarray]) -> float:
    """Share of frames whose best letter is the same for both recognizers (conf 0.001)."""
    same = 0
    for frame in frames:
        top_a, top_b = a.recognize(frame, conf=0.001).top, b.recognize(frame, conf=0.001).top
        same += (top_a and top_a.letter) == (top_b and top_b.letter)
    return round(same / len(frames), 3)


def run(args: argparse.Namespace, work: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Export, quantize and time every variant at every size; ``work`` holds the files."""
    from ultralytics import YOLO

    dataset = args.dataset or Path(os.environ.get("FINGERSPELL_DATASET", DEFAULT_DATASET))
    if args.weights:
        weights = args.weights
    elif args.model_uri:
        weights = Recognizer.load(args.model_uri, prefer="pt").source.path
        if weights.suffix != ".pt":
            raise ValueError(f"{args.model_uri} holds no best.pt to compare with")
        if is_two_stage(weights.parent) and not args.classifier:
            _two_stage_parts(weights.parent, args)
    else:
        weights = smoke_weights(dataset, work)
    test_images = sorted((dataset / "test" / "images").iterdir())[: args.images]
    frames = [cv2.imread(str(p)) for p in test_images]
    calibration = sorted((dataset / "train" / "images").iterdir())[::10][:100]
    print(f"weights {weights}; {len(frames)} images; load {os.getloadavg()}", flush=True)

    results: dict[str, dict[str, dict[str, Any]]] = {}
    for size in args.sizes:
        folder = work / str(size)
        fp32_path = export_onnx(weights, size, folder)
        int8_path = quantize_int8(fp32_path, calibration, folder / "model.int8.onnx")
        fp32 = Recognizer.load(str(fp32_path), threads=args.threads, spin=args.spin)
        int8 = Recognizer.load(str(int8_path), threads=args.threads, spin=args.spin)
        pt_model, onnx_model = YOLO(str(weights)), YOLO(str(fp32_path), task="detect")
        runners: dict[str, Callable[[np.ndarray], object]] = {
            "ultralytics_pt": lambda f: pt_model.predict(f, imgsz=size, verbose=False),  # noqa: B023
            "ultralytics_onnx": lambda f: onnx_model.predict(f, imgsz=size, verbose=False),  # noqa: B023
            "recognizer_fp32": fp32.recognize,
            "recognizer_int8": int8.recognize,
        }
        if args.classifier:
            pad = args.crop_pad
            mirror = args.crop_mirror
            first, *more = args.classifier
            both = assemble(fp32_path, first, None, folder / "two-stage", pad, None, mirror, more)
            both8 = assemble(
                fp32_path, first, None, folder / "two-stage-int8", pad, int8_path, mirror, more
            )
            for name, model in (("two_stage_fp32", both), ("two_stage_int8", both8)):
                loaded = Recognizer.load(str(model), threads=args.threads, spin=args.spin)
                runners[name] = loaded.recognize
            if args.classifier_weights:
                runners["ultralytics_two_stage_pt"] = _ultralytics_two_stage(
                    pt_model, YOLO(str(args.classifier_weights), task="classify"), size, pad
                )
        results[str(size)] = measure(runners, frames, args.warmup, args.rounds)
        results[str(size)]["recognizer_int8"]["top1_agreement_with_fp32"] = top_agreement(
            fp32, int8, frames
        )
        print(f"{size} px done; load {os.getloadavg()}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, help="ultralytics .pt weights")
    parser.add_argument("--model-uri", help="MLflow model URI holding artifacts/best.pt")
    parser.add_argument(
        "--classifier", type=Path, nargs="+",
        help="two-stage: the letter classifier .onnx (several: an averaged ensemble)",
    )  # fmt: skip
    parser.add_argument(
        "--classifier-weights", type=Path,
        help="two-stage: the classifier's ultralytics .pt (adds ultralytics_two_stage_pt)",
    )  # fmt: skip
    parser.add_argument("--crop-pad", type=float, default=0.2, help="two-stage: crop margin")
    parser.add_argument(
        "--crop-mirror", action="store_true", help="two-stage: average each crop with its mirror"
    )
    parser.add_argument("--dataset", type=Path, default=None, help="YOLO dataset folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 416, 640])
    parser.add_argument("--images", type=int, default=50, help="test images timed")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="recognizer intra-op threads")
    parser.add_argument("--spin", action="store_true", help="recognizer threads busy-wait")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/inference.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fingerspell-bench-") as tmp:
        try:
            results = run(args, Path(tmp))
        except ValueError as exc:
            parser.error(str(exc))

    variants = [v for v in (*VARIANTS, *TWO_STAGE) if v in next(iter(results.values()))]
    header = f"{'size':>5} " + " ".join(f"{v:>24}" for v in variants)
    print(f"\nmedian / p95 ms per image (batch 1, {os.cpu_count()} CPUs)\n{header}")
    for size, stats in results.items():
        cells = [f"{stats[v]['median_ms']:>10.1f} / {stats[v]['p95_ms']:<11.1f}" for v in variants]
        print(f"{size:>5} " + " ".join(f"{c:>24}" for c in cells))
    for size, stats in results.items():
        speedup = stats["ultralytics_pt"]["median_ms"] / stats["recognizer_int8"]["median_ms"]
        agreement = stats["recognizer_int8"]["top1_agreement_with_fp32"]
        print(
            f"{size} px: int8 {speedup:.1f}x faster than ultralytics .pt; top-1 = fp32 on "
            f"{agreement:.0%} of images"
        )
        if "ultralytics_two_stage_pt" in stats:
            base = stats["ultralytics_two_stage_pt"]["median_ms"]
            best = min(stats[v]["median_ms"] for v in ("two_stage_fp32", "two_stage_int8"))
            print(f"{size} px: two-stage recognizer {base / best:.1f}x faster than via ultralytics")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
