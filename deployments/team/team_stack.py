"""The team stack on one machine: PostgreSQL, Prefect server, MLflow server, two workers.

``python deployments/team/team_stack.py up`` starts, all on 127.0.0.1: Debian's PostgreSQL
(``team_postgres.py``; databases ``prefect`` and ``mlflow``), the Prefect server on it, the
MLflow tracking server on it with proxied artifacts (``--artifacts-destination``: a folder, or
``gs://…`` from ``FINGERSPELL_TEAM_ARTIFACTS``), the ``team-process`` work pool, the ``team``
deployments of ``deployments/team/prefect.yaml`` and two process workers (one flow run each).
It prints the URLs and returns; the processes run on. ``down`` stops what ``up`` started (the
PIDs in ``<state>/stack.json``, each checked to still be that process), nothing else.

State (default ``$FINGERSPELL_HOME/team``, else ``.fingerspell/team``): ``stack.json``,
``logs/``, ``prefect/``, ``mlartifacts/``, ``pgpass`` (0600) and, unless running as root, the
PostgreSQL cluster. Ports: ``TEAM_PREFECT_PORT`` (4200), ``TEAM_MLFLOW_PORT`` (5000),
``TEAM_PG_PORT`` (5433).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import team_postgres

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POOL = "team-process"
WORKERS = ("team-worker-1", "team-worker-2")
DEPLOYMENTS = REPO / "deployments" / "team" / "prefect.yaml"
QUIET = {
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "YOLO_AUTOINSTALL": "False",
    "NO_ALBUMENTATIONS_UPDATE": "1",
}
# What only the servers may see; clients (the workers and their flows) never get these.
SERVER_ONLY = (
    "PGPASSFILE",
    "PGPASSWORD",
    "MLFLOW_BACKEND_STORE_URI",
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
)


def read_state(state: Path) -> dict[str, Any]:
    """The stack's ``stack.json`` (ports, URLs, PIDs; never the password)."""
    path = state / "stack.json"
    return json.loads(path.read_text()) if path.is_file() else {"pids": {}}


def _write_state(state: Path, info: dict[str, Any]) -> None:
    (state / "stack.json").write_text(json.dumps(info, indent=2))


def client_env(info: dict[str, Any]) -> dict[str, str]:
    """The environment of a client of the stack (a worker, the CLI, a test)."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ONLY}
    return (
        env
        | QUIET
        | {
            "PREFECT_API_URL": info["prefect_api"],
            "PREFECT_HOME": str(Path(info["state"]) / "prefect-client"),
            "FINGERSPELL_MLFLOW_TRACKING_URI": info["mlflow_url"],
            "MLFLOW_TRACKING_URI": info["mlflow_url"],
            "FINGERSPELL_HOME": info["home"],
            "FINGERSPELL_EXPERIMENT": info["experiment"],
            "PWD": str(REPO),  # the pull step of deployments/team/prefect.yaml is `{{ $PWD }}`
        }
    )


def _server_env(info: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    return env | QUIET | {"PGPASSFILE": str(Path(info["state"]) / "pgpass")} | extra


def _spawn(name: str, args: list[str], env: dict[str, str], info: dict[str, Any]) -> int:
    """Start ``args`` in a session of its own with output to ``logs/<name>.log``; record it."""
    log = Path(info["state"]) / "logs" / f"{name}.log"
    with log.open("a") as handle:
        process = subprocess.Popen(
            args, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip
    info["pids"][name] = process.pid
    _write_state(Path(info["state"]), info)
    return process.pid


def _wait_http(url: str, pid: int, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise RuntimeError(f"{url}: server exited; see {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout:.0f} s; see {log}")


def start_mlflow(info: dict[str, Any]) -> int:
    """Start (or start again, on the same port and store) the MLflow tracking server."""
    state = Path(info["state"])
    pid = _spawn(
        "mlflow",
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(info["ports"]["mlflow"]),
         "--workers", os.environ.get("TEAM_MLFLOW_WORKERS", "2"), "--serve-artifacts",
         "--artifacts-destination", info["artifacts"]],
        _server_env(info, {"MLFLOW_BACKEND_STORE_URI": info["mlflow_store"]}),
        info,
    )  # fmt: skip
    _wait_http(f"{info['mlflow_url']}/health", pid, state / "logs" / "mlflow.log")
    return pid


def _cli(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:4])} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def up(
    state: Path,
    ports: dict[str, int],
    home: Path,
    artifacts: str | None = None,
    experiment: str = "fingerspell",
    worker_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start the whole stack; return what ``stack.json`` holds (URLs, ports, PIDs).

    Args:
        state: The state folder (created).
        ports: ``postgres``, ``prefect`` and ``mlflow`` ports on 127.0.0.1.
        home: ``FINGERSPELL_HOME`` of the workers' flow runs.
        artifacts: MLflow's artifact destination (default ``<state>/mlartifacts``).
        experiment: ``FINGERSPELL_EXPERIMENT`` of the flow runs.
        worker_env: More environment for the workers (e.g. ``PREFECT_WORKER_QUERY_SECONDS``).
    """
    state.mkdir(parents=True, exist_ok=True)
    (state / "logs").mkdir(exist_ok=True)
    if any(_alive(pid) for pid in read_state(state)["pids"].values()):
        raise RuntimeError(f"a stack of {state} is running already; run `down` first")
    info: dict[str, Any] = {
        "state": str(state.resolve()),
        "home": str(home.resolve()),
        "experiment": experiment,
        "ports": ports,
        "pids": {},
        "artifacts": artifacts or str((state / "mlartifacts").resolve()),
        "prefect_api": f"http://127.0.0.1:{ports['prefect']}/api",
        "mlflow_url": f"http://127.0.0.1:{ports['mlflow']}",
    }
    try:
        pg = team_postgres.start(state, ports["postgres"], state / "logs" / "postgres.log")
        info["pids"]["postgres"] = pg.process.pid
        info["mlflow_store"] = pg.url("mlflow", "postgresql+psycopg2")
        _write_state(state, info)
        prefect_env = {
            "PREFECT_HOME": str(state / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", "postgresql+asyncpg"),
            "PREFECT_UI_ENABLED": os.environ.get("TEAM_PREFECT_UI", "true"),
        }
        pid = _spawn(
            "prefect",
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
             "--port", str(ports["prefect"])],
            _server_env(info, prefect_env),
            info,
        )  # fmt: skip
        start_mlflow(info)
        _wait_http(f"{info['prefect_api']}/health", pid, state / "logs" / "prefect.log")
        env = client_env(info)
        prefect = str(BIN / "prefect")
        _cli([prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite"], env)
        _cli([prefect, "work-pool", "set-concurrency-limit", POOL, str(len(WORKERS))], env)
        _cli([prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(DEPLOYMENTS)], env)
        for name in WORKERS:
            _spawn(
                name,
                [prefect, "worker", "start", "--pool", POOL, "--type", "process",
                 "--name", name, "--limit", "1"],
                env | (worker_env or {}),
                info,
            )  # fmt: skip
    except BaseException:
        down(state)
        raise
    return info


def _alive(pid: int) -> bool:
    try:  # reap it first if it is our own child that exited (a zombie still answers kill 0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ours(pid: int) -> bool:
    """Still the process we started: alive and leading the session it was started in."""
    try:
        return _alive(pid) and os.getsid(pid) == pid
    except ProcessLookupError:
        return False


def stop_process(state: Path, name: str, timeout: float = 60) -> None:
    """Stop one process of the stack (its whole session) and forget its PID."""
    info = read_state(state)
    pid = info["pids"].pop(name, None)
    if pid is not None and _ours(pid):
        # SIGINT: a worker's graceful stop (it ignores SIGTERM), PostgreSQL's fast shutdown.
        graceful = name in WORKERS or name == "postgres"
        os.killpg(pid, signal.SIGINT if graceful else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
    _write_state(state, info)


def down(state: Path) -> None:
    """Stop what ``up`` started: workers, then the servers, then PostgreSQL."""
    names = list(read_state(state)["pids"])
    order = sorted(names, key=lambda n: ("worker" not in n, n == "postgres"))
    for name in order:
        stop_process(state, name)


def _default_state() -> Path:
    home = Path(os.environ.get("FINGERSPELL_HOME", REPO / ".fingerspell"))
    return home / "team"


def main(argv: list[str] | None = None) -> int:
    """``up``, ``down`` or ``status`` of the team stack."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--state", type=Path, default=_default_state(), help="state folder")
    args = parser.parse_args(argv)
    state = args.state.resolve()
    if args.command == "down":
        down(state)
        print(f"team stack of {state} stopped")
        return 0
    if args.command == "status":
        info = read_state(state)
        for name, pid in info["pids"].items():
            print(f"{name:15} pid {pid:>7}  {'running' if _ours(pid) else 'gone'}")
        return 0
    ports = {
        "postgres": int(os.environ.get("TEAM_PG_PORT", "5433")),
        "prefect": int(os.environ.get("TEAM_PREFECT_PORT", "4200")),
        "mlflow": int(os.environ.get("TEAM_MLFLOW_PORT", "5000")),
    }
    home = Path(os.environ.get("FINGERSPELL_HOME", REPO / ".fingerspell"))
    info = up(state, ports, home, os.environ.get("FINGERSPELL_TEAM_ARTIFACTS"))
    print(f"""Fingerspell's team stack is up (state and logs in {state}):
  PostgreSQL   127.0.0.1:{ports["postgres"]} (databases prefect, mlflow; password in pgpass)
  Prefect UI   http://127.0.0.1:{ports["prefect"]}   (PREFECT_API_URL={info["prefect_api"]})
  MLflow UI    {info["mlflow_url"]}   (artifacts proxied to {info["artifacts"]})
  workers      {", ".join(WORKERS)} on pool {POOL}
Run a training:  PREFECT_API_URL={info["prefect_api"]} {BIN}/prefect deployment run \\
  'pipeline/team' --params '{{"params": {{"profile": "smoke"}}}}' --watch
Stop it all:     deployments/team/down""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
