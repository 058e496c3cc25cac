"""Load on the MLflow tracking server: PostgreSQL against sqlite as its backend store.

For each backend a real ``mlflow server`` starts on 127.0.0.1 (``--workers`` processes, proxied
artifacts): sqlite in a temp file, or PostgreSQL started as the team stack starts it
(``deployments/team/team_postgres.py``). Then, for each number of concurrent clients, every
client (a thread with its own ``MlflowClient``) creates a run and, ``--rounds`` times, logs a
batch of metrics and registers a model version, as many trainings finishing at once would.
MLflow's own HTTP retries are off (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``), so a request the
server fails counts as an error instead of hiding as latency.

Prints requests per second, p50/p95 latency and errors per backend and client count, the first
client count where sqlite fails and PostgreSQL does not, and writes
``benchmarks/results/tracking_load.json``.

    python benchmarks/tracking_load.py --clients 1,8,32 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deployments" / "team"))
from _common import percentile, print_table, write_results

MODEL = "load-test"


def _start_server(backend: str, root: Path, workers: int) -> tuple[list[Any], str]:
    """Start PostgreSQL (if asked) and an MLflow server; return the processes and its URL."""
    import team_postgres
    from team_stack import BIN, _wait_http

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.servers import free_port, start_server

    processes: list[Any] = []
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if backend == "postgres":
        pg = team_postgres.start(root, free_port(), root / "postgres.log")
        processes.append(pg.process)
        env |= {"MLFLOW_BACKEND_STORE_URI": pg.url("mlflow", "postgresql+psycopg2")}
        env["PGPASSFILE"] = str(pg.passfile)
    else:
        env["MLFLOW_BACKEND_STORE_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    port = free_port()
    log = root / "mlflow.log"
    mlflow = start_server(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--artifacts-destination", str(root / "artifacts")],
        log, env,
    )  # fmt: skip
    processes.insert(0, mlflow)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/health", mlflow.pid, log)
    return processes, url


def _client_work(url: str, experiment_id: str, rounds: int, metrics: int) -> dict[str, Any]:
    """One client: a run, then ``rounds`` × (a batch of metrics, a model version)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url, registry_uri=url)
    latencies: list[float] = []
    errors: dict[str, int] = {}

    def timed(action: Any) -> Any:
        started = time.perf_counter()
        try:
            return action()
        except Exception as error:  # what the server refused or failed
            key = f"{type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''}"
            errors[key] = errors.get(key, 0) + 1
            return None
        finally:
            latencies.append(time.perf_counter() - started)

    run = timed(lambda: client.create_run(experiment_id))
    if run is not None:
        run_id = run.info.run_id
        for step in range(rounds):
            now = int(time.time() * 1000)
            batch = [Metric(f"m{i}", float(i * step), now, step) for i in range(metrics)]
            timed(lambda batch=batch: client.log_batch(run_id, metrics=batch))
            timed(
                lambda: client.create_model_version(
                    MODEL, f"{run.info.artifact_uri}/model", run_id=run_id
                )
            )
        timed(lambda: client.set_terminated(run_id))
    return {"latencies": latencies, "errors": errors}


def _level(url: str, experiment_id: str, clients: int, rounds: int, metrics: int) -> dict:
    barrier = threading.Barrier(clients)

    def work(_: int) -> dict[str, Any]:
        barrier.wait()  # all clients start together
        return _client_work(url, experiment_id, rounds, metrics)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(work, range(clients)))
    wall = time.perf_counter() - started
    latencies = [x for r in results for x in r["latencies"]]
    errors: dict[str, int] = {}
    for result in results:
        for key, count in result["errors"].items():
            errors[key] = errors.get(key, 0) + count
    failed = sum(errors.values())
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": failed,
        "error_kinds": errors,
        "wall_s": wall,
        "requests_per_s": (len(latencies) - failed) / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p95_ms": 1000 * percentile(latencies, 95),
    }


def measure(backend: str, levels: list[int], rounds: int, metrics: int, workers: int) -> list:
    """Every client count against a fresh server of ``backend``."""
    from mlflow.tracking import MlflowClient

    root = Path(tempfile.mkdtemp(prefix=f"tracking-load-{backend}-"))
    processes, url = _start_server(backend, root, workers)
    try:
        client = MlflowClient(url, registry_uri=url)
        client.create_registered_model(MODEL)
        rows = []
        for clients in levels:
            experiment_id = client.create_experiment(f"load-{clients}")
            row = _level(url, experiment_id, clients, rounds, metrics)
            row["backend"] = backend
            rows.append(row)
            print(
                f"{backend:8} {clients:3} clients: {row['requests_per_s']:6.1f} req/s, "
                f"p95 {row['p95_ms']:7.0f} ms, {row['errors']} errors",
                flush=True,
            )
        return rows
    finally:
        _stop(processes, root)


def _stop(processes: list[Any], root: Path) -> None:
    """Stop the MLflow server (SIGTERM), then PostgreSQL (SIGINT: fast shutdown); clean up."""
    import shutil
    import signal

    import team_postgres
    from support.servers import stop

    for process in processes:
        stop(process, signal.SIGTERM if process is processes[0] else signal.SIGINT)
    cluster = team_postgres.cluster_dir(root)
    for folder in (root, cluster, cluster.parent / f"{cluster.name}-run"):
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """Measure both backends, print the table and where sqlite gives out, write the JSON."""
    import logging

    import mlflow  # its import sets its loggers' level: quieten them after it

    logging.getLogger(mlflow.__name__).setLevel(logging.WARNING)  # a line per version otherwise
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,4,16,32", help="client counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=5, help="metric batches + versions each")
    parser.add_argument("--metrics", type=int, default=20, help="metrics per batch")
    parser.add_argument("--workers", type=int, default=4, help="MLflow server worker processes")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    args = parser.parse_args()
    levels = [int(n) for n in args.clients.split(",")]
    rows = []
    for backend in args.backends.split(","):
        rows += measure(backend, levels, args.rounds, args.metrics, args.workers)
    print()
    print_table(
        ["backend", "clients", "requests", "req/s", "p50 ms", "p95 ms", "errors"],
        [[r["backend"], r["clients"], r["requests"], r["requests_per_s"], r["p50_ms"],
          r["p95_ms"], r["errors"]] for r in rows],
    )  # fmt: skip
    by = {(r["backend"], r["clients"]): r for r in rows}
    sqlite_fails = [n for n in levels if by.get(("sqlite", n), {}).get("errors")]
    pg_holds = [n for n in sqlite_fails if by.get(("postgres", n), {}).get("errors") == 0]
    breaking = pg_holds[0] if pg_holds else None
    for row in rows:
        if row["error_kinds"]:
            print(f"{row['backend']} at {row['clients']} clients: {row['error_kinds']}")
    verdict = (
        f"sqlite fails from {breaking} concurrent clients, PostgreSQL does not"
        if breaking
        else "no client count here where sqlite failed and PostgreSQL did not"
    )
    print(verdict)
    settings = vars(args) | {"levels": levels}
    path = write_results(
        "tracking_load", {"settings": settings, "rows": rows, "sqlite_breaks_at": breaking}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
