"""Pixels alone against pixels + landmarks: accuracy on valid and a simulated signer, and cost.

The same model folder is read twice: as it is (fused) and with its fusion rule removed
(the crop classifier alone, the model as it was before landmarks). Both are scored with the
project's own evaluation on valid (the choosing split; test is left to the training flow's
report) and on a simulated new signer (``simulated_signer.py``: train photos' hands recoloured,
shrunk and pasted into generated rooms, 640×480 frames). Cost: the fused recognizer per
640×480 frame as the app calls it, next to the sum of its bare parts run on the same frames
with their own runtimes (onnxruntime for the detector, the crop classifier and the landmark
classifier; LiteRT for the landmark network), one hand each.

    .venv/bin/python benchmarks/fused.py --home .fingerspell          # the champion
    .venv/bin/python benchmarks/fused.py --model path/to/model/folder

Top-1 ranks whatever each model found, however unsure; a second table counts the images read
right, wrong and not at all at the Live page's threshold (``--live-conf``), what a learner
sees. Prints the tables and writes ``benchmarks/results/fused.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dataset_path, print_table, write_results
from simulated_signer import make_signer

from tasks.evaluation.evaluate import evaluate
from tasks.evaluation.significance import bootstrap_interval
from tasks.inference.recognizer import Recognizer


def model_folder(args: argparse.Namespace, work: Path) -> Path:
    """The model's local folder: ``--model``, or the champion downloaded from ``--home``."""
    if args.model is not None and Path(args.model).is_dir():
        return Path(args.model)
    import os

    os.environ["FINGERSPELL_HOME"] = str(args.home.resolve())
    from tasks.core.settings import get_settings
    from tasks.inference.model_cache import download

    uri = args.model or "models:/asl-detector@champion"
    import mlflow

    mlflow.set_tracking_uri(get_settings().tracking_uri)
    return download(uri, work / "cache")


def pixel_twin(folder: Path, target: Path) -> Path:
    """A copy of a fused model folder without its fusion rule: the crop classifier alone."""
    copy = Path(shutil.copytree(folder, target))
    for meta_path in copy.rglob("metadata.json"):
        meta = json.loads(meta_path.read_text())
        meta.pop("fusion", None)
        meta_path.write_text(json.dumps(meta))
    return copy


def accuracy(
    folders: dict[str, Path], sets: dict[str, tuple[Path, list[str]]], work: Path
) -> dict[str, dict[str, Any]]:
    """Top-1 of each model on each set (its yamls' valid splits pooled), through ``evaluate``."""
    table: dict[str, dict[str, Any]] = {}
    for name, folder in folders.items():
        for label, (data_yaml, splits) in sets.items():
            correct: list[bool] = []
            letters: dict[str, list[float]] = {}
            for yaml_name in splits:
                out = work / "eval" / name / label / yaml_name
                report = evaluate(folder, data_yaml.parent / yaml_name, "valid", out)
                correct += list(report.image_correct.values())
                for row in report.per_letter:
                    if row.present and row.top1_accuracy is not None:
                        letters.setdefault(row.letter, []).append(row.top1_accuracy)
            share = bootstrap_interval(correct)
            table.setdefault(name, {})[label] = {
                "top1": share.value, "low": share.low, "high": share.high, "images": share.n,
                "per_letter": {k: sum(v) / len(v) for k, v in sorted(letters.items())},
            }  # fmt: skip
    return table


def read_at(
    folders: dict[str, Path], sets: dict[str, tuple[Path, list[str]]], conf: float
) -> dict[str, dict[str, Any]]:
    """Each model's share of images read right, wrong and not at all at threshold ``conf``.

    Top-1 (above) ranks whatever was found, however unsure; the Live page shows a letter only
    above its threshold, so this is what a learner sees.
    """
    import cv2

    from tasks.data.yolo_format import label_path, list_images, read_boxes_xyxy, split_images

    table: dict[str, dict[str, Any]] = {}
    for name, folder in folders.items():
        recognizer = Recognizer.load(str(folder))
        for label, (data_yaml, splits) in sets.items():
            right = wrong = 0
            paths = []
            for yaml_name in splits:
                paths += list_images(split_images(data_yaml.parent / yaml_name, "valid")[0])
            for path in paths:
                image = cv2.imread(str(path))
                truth = read_boxes_xyxy(label_path(path), image.shape[1], image.shape[0])[1]
                top = recognizer.recognize(image, conf=conf, max_det=1, agnostic=True).top
                right += top is not None and top.class_id == int(truth[0])
                wrong += top is not None and top.class_id != int(truth[0])
            n = len(paths)
            table.setdefault(name, {})[label] = {
                "right": right / n, "wrong": wrong / n, "none": (n - right - wrong) / n,
                "images": n, "conf": conf,
            }  # fmt: skip
    return table


def cost(folder: Path, frames: list[Any], rounds: int) -> dict[str, float]:
    """Median ms per frame of the fused recognizer and of its bare parts (one hand each)."""
    import numpy as np

    from tasks.inference.crop_classifier import square_crop
    from tasks.inference.landmarks import features, square_patch
    from tasks.inference.runtime import open_session

    fused = Recognizer.load(str(folder))
    assert fused.fused is not None, f"{folder} is not a fused model"
    base = fused.source.path.parent
    detector = open_session(fused.source.path)
    crop_cls = open_session(base / "classifier.onnx", threads=1)
    landmark_cls = open_session(base / "landmarks.onnx", threads=1)
    interpreter = fused.fused.reader._interpreter
    detail = interpreter.get_input_details()[0]["index"]
    size, crop_size = fused.input_size, fused.classifier.size  # type: ignore[union-attr]
    mirror = 2 if fused.classifier.mirror else 1  # type: ignore[union-attr]
    times: dict[str, list[float]] = {"fused": [], "bare_sum": []}
    checked = []
    for _ in range(rounds):
        for frame in frames:
            start = time.perf_counter()
            found = fused.recognize(frame, conf=0.25, max_det=1, agnostic=True)
            times["fused"].append((time.perf_counter() - start) * 1e3)
            checked.append(len(found.detections))
            box = (200.0, 120.0, 360.0, 320.0)
            tensor = np.zeros((1, 3, *size), np.float32)
            crop = square_crop(frame, box, 0.2, crop_size)
            crop_tensor = np.ascontiguousarray(crop.transpose(2, 0, 1)[None], np.float32) / 255
            patch = square_patch(frame, box)[0].astype(np.float32)[None] / 255
            vector = features(np.random.default_rng(0).normal(size=(21, 3)), 0.9)[None]
            start = time.perf_counter()
            detector.run(None, {detector.get_inputs()[0].name: tensor})
            for _ in range(mirror):
                crop_cls.run(None, {crop_cls.get_inputs()[0].name: crop_tensor})
            interpreter.set_tensor(detail, patch)
            interpreter.invoke()
            landmark_cls.run(None, {landmark_cls.get_inputs()[0].name: vector})
            times["bare_sum"].append((time.perf_counter() - start) * 1e3)
    out = {f"{k}_median_ms": statistics.median(v) for k, v in times.items()}
    out["ratio"] = out["fused_median_ms"] / out["bare_sum_median_ms"]
    out["frames"] = len(frames) * rounds
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder or MLflow URI (default: the champion)")
    parser.add_argument("--home", type=Path, default=Path(".fingerspell"), help="data home")
    parser.add_argument("--bursts", type=int, default=3, help="simulated bursts per letter")
    parser.add_argument("--frames", type=int, default=4, help="frames per burst")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds over the frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--live-conf", type=float, default=0.5, help="threshold (the Live page's default)"
    )
    args = parser.parse_args(argv)
    dataset = dataset_path()
    with tempfile.TemporaryDirectory(prefix="fingerspell-fused-") as tmp:
        work = Path(tmp)
        folder = model_folder(args, work)
        folders = {"pixels": pixel_twin(folder, work / "pixels"), "fused": folder}
        signer = work / "signer"
        make_signer(dataset, signer, args.bursts, args.frames, seed=args.seed)
        # Every frame of the simulated signer is new to the model: score its train split too
        # (evaluation reads a yaml's valid split, so a second yaml points valid at train).
        spec = yaml.safe_load((signer / "data.yaml").read_text())
        (signer / "all.yaml").write_text(yaml.safe_dump({**spec, "val": spec["train"]}))
        sets = {
            "valid": (dataset / "data.yaml", ["data.yaml"]),
            "simulated signer": (signer / "data.yaml", ["data.yaml", "all.yaml"]),
        }
        table = accuracy(folders, sets, work)
        live = read_at(folders, sets, args.live_conf)
        import cv2

        frames = [cv2.imread(str(p)) for p in sorted(signer.rglob("images/*.jpg"))[:60]]
        timing = cost(folder, frames, args.rounds)
    rows = [
        [name, *(f"{c['top1']:.3f} ({c['low']:.3f}-{c['high']:.3f}, {c['images']})"
                 for c in by_set.values())]
        for name, by_set in table.items()
    ]  # fmt: skip
    print_table(["model", *(f"{label} top-1 (95%, images)" for label in sets)], rows)
    print_table(
        ["model", *(f"{label}: right / wrong / none at {args.live_conf}" for label in sets)],
        [[name, *(f"{c['right']:.3f} / {c['wrong']:.3f} / {c['none']:.3f}"
                  for c in by_set.values())]
         for name, by_set in live.items()],
    )  # fmt: skip
    per_letter = {name: table[name]["valid"]["per_letter"] for name in table}
    print_table(
        ["valid top-1 per letter", *per_letter],
        [[letter, *(per_letter[n].get(letter, float("nan")) for n in per_letter)]
         for letter in sorted(per_letter["fused"])],
    )  # fmt: skip
    print_table(
        ["fused ms/frame", "bare parts ms", "ratio", "frames"],
        [[timing["fused_median_ms"], timing["bare_sum_median_ms"], timing["ratio"],
          timing["frames"]]],
    )  # fmt: skip
    path = write_results(
        "fused", {"accuracy": table, "at_threshold": live, "cost": timing, "args": vars(args)}
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
