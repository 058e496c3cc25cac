"""Training throughput inside our flow vs the plain ``yolo train`` CLI, same data and args.

    python benchmarks/train.py [--epochs 2 --fraction 0.25 --imgsz 320]

Both figures come from each run's ``results.csv`` with the same formula
(epochs × train images ÷ elapsed seconds, validation included), so they compare like for
like. Writes ``benchmarks/results/train.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import dataset_path, print_table, write_results


def main() -> None:
    """Train twice (flow, CLI) and print images per second for each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="fingerspell-bench-train-"))
    os.environ["FINGERSPELL_HOME"] = str(home)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("YOLO_CONFIG_DIR", str(home / "ultralytics"))

    from prefect import flow

    from flows.train_stages import train_task
    from tasks.data.acquire import acquire
    from tasks.data.yolo_format import count_split_images
    from tasks.registry import mlflow_runs
    from tasks.registry.tracking import open_job
    from tasks.training.detector import TrainConfig
    from tasks.training.resume import throughput

    dataset = acquire(str(dataset_path()), home / "datasets")
    config = TrainConfig(
        model="yolo11n.yaml",
        imgsz=args.imgsz,
        epochs=args.epochs,
        batch=args.batch,
        fraction=args.fraction,
        workers=2,
        patience=0,
        device="cpu",
        overrides={"plots": False},
    )
    n_images = int(count_split_images(dataset.data_yaml) * args.fraction)

    @flow(name="bench-train")
    def bench_flow() -> Path:
        job = open_job()
        client, experiment = job.client, job.experiment_id
        with mlflow_runs.run(client, experiment, "bench-train") as run_id:
            return train_task(dataset, config, home / "runs", run_id).run_dir

    start = time.perf_counter()
    flow_dir = bench_flow()
    flow_wall = time.perf_counter() - start

    cli_args = {
        k: v for k, v in config.ultralytics_args().items() if k not in ("deterministic",)
    } | {"plots": False, "deterministic": True}
    command = [str(Path(sys.executable).parent / "yolo"), "train", "model=yolo11n.yaml"]
    command += [f"data={dataset.data_yaml}", f"project={home / 'cli'}", "name=run", "exist_ok=True"]
    command += [f"{k}={v}" for k, v in cli_args.items()]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli_wall = time.perf_counter() - start

    rows, payload = [], {}
    for name, run_dir, wall in (
        ("flow", flow_dir, flow_wall),
        ("yolo CLI", home / "cli/run", cli_wall),
    ):
        epochs, seconds, _ = throughput(run_dir, n_images)
        rate = epochs * n_images / seconds
        rows.append([name, epochs, n_images, seconds, rate, wall])
        payload[name] = {"epochs": epochs, "train_seconds": seconds, "images_per_second": rate,
                         "wall_seconds": wall}  # fmt: skip
    ratio = payload["flow"]["images_per_second"] / payload["yolo CLI"]["images_per_second"]
    print_table(["run", "epochs", "images/epoch", "train s", "images/s", "wall s"], rows)
    print(f"flow / CLI throughput: {ratio:.3f} (goal >= 0.95)")
    path = write_results("train", {"args": vars(args), "runs": payload, "ratio": ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
