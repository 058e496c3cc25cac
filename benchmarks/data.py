"""Data stage timings on the full dataset: acquire, validate, augment, and a cache-hit re-run.

    python benchmarks/data.py            # writes benchmarks/results/data.json

The flow re-runs go through Prefect: without a server Prefect starts a temporary one per
process, so the first flow run pays that start; the cache-hit figure is a second run in
the same process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import dataset_path, print_table, write_results


def main() -> None:
    """Measure and print the data stage timings."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    source = dataset_path()
    home = Path(tempfile.mkdtemp(prefix="fingerspell-bench-data-"))
    os.environ["FINGERSPELL_HOME"] = str(home)
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))

    from tasks.data.acquire import acquire
    from tasks.data.augment import AugmentConfig, augment_dataset
    from tasks.data.validate import validate_dataset

    config = AugmentConfig(copies=3)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    ref = acquire(str(source), home / "tasks")
    timings["acquire_s"] = time.perf_counter() - start
    start = time.perf_counter()
    report = validate_dataset(ref.local_path, ref.names)
    timings["validate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    counts = augment_dataset(ref.local_path, home / "tasks" / "aug", config, ref.names)
    timings["augment_s"] = time.perf_counter() - start

    from flows.data import DataParams, data_flow

    params = DataParams(source=str(source), augment=config)
    start = time.perf_counter()
    data_flow(params)
    timings["flow_first_run_s"] = time.perf_counter() - start
    start = time.perf_counter()
    data_flow(params)
    timings["flow_cache_hit_s"] = time.perf_counter() - start

    print_table(["stage", "seconds"], [[k, v] for k, v in timings.items()])
    print(f"validation ok={report.ok}; augmented images per split: {counts}")
    path = write_results("data", {"timings": timings, "counts": counts, "copies": config.copies})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
