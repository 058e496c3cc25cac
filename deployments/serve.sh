#!/usr/bin/env bash
# The local stack for the scheduled path, in one command (`make serve`), stopped by Ctrl-C:
# a Prefect server, an MLflow tracking server, the `local-process` pool, the four `local`
# deployments of prefect.yaml and a process worker, all on 127.0.0.1.
#
# State lives in FINGERSPELL_HOME (default ./.fingerspell): prefect/ (Prefect's sqlite
# database), mlflow.db and mlartifacts/ (the same store `make demo` writes), logs/.
# Ports: PREFECT_PORT (4200), MLFLOW_PORT (5000). Only the processes started here are stopped:
# the worker with SIGINT (it finishes cleanly), the servers with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
PREFECT_PORT=${PREFECT_PORT:-4200}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
FINGERSPELL_HOME=$(mkdir -p "${FINGERSPELL_HOME:-.fingerspell}" && cd "${FINGERSPELL_HOME:-.fingerspell}" && pwd)
LOGS=$FINGERSPELL_HOME/logs
mkdir -p "$LOGS"

export FINGERSPELL_HOME
export PREFECT_HOME=${PREFECT_HOME:-$FINGERSPELL_HOME/prefect}
export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export FINGERSPELL_MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true
# `mlflow server` otherwise starts a pool of job-runner processes (GenAI jobs) we never use.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

server_pids=()
worker_pid=
# shellcheck disable=SC2329  # invoked by the traps below
stop_all() {
  trap - EXIT INT TERM
  echo "stopping the stack..."
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -INT -- "-$worker_pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.5; done
    kill -TERM -- "-$worker_pid" 2>/dev/null || true
  fi
  for pid in "${server_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${server_pids[@]}"; do
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  echo "stopped"
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

# Start a process in the background with its output in $LOGS/<log>; its pid is in $started.
# Job control on while it starts: it gets a process group of its own (signalled as a whole,
# untouched by the terminal's Ctrl-C) and does not start with SIGINT ignored, as a script's
# background commands otherwise do (the worker would then never stop on SIGINT). Off again
# afterwards, so that Ctrl-C reaches this script.
start() {
  local log=$1
  shift
  set -m
  "$@" >"$LOGS/$log" 2>&1 &
  started=$!
  set +m
}

wait_http() {
  local url=$1 pid=$2 log=$3
  for _ in $(seq 360); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$url: server exited; see $LOGS/$log" >&2
      tail -20 "$LOGS/$log" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "$url not up after 180 s; see $LOGS/$log" >&2
  return 1
}

start prefect-server.log "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
server_pids+=("$started")
start mlflow-server.log "$BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" \
  --workers 1 --backend-store-uri "sqlite:///$FINGERSPELL_HOME/mlflow.db" \
  --artifacts-destination "$FINGERSPELL_HOME/mlartifacts"
server_pids+=("$started")
wait_http "$PREFECT_API_URL/health" "${server_pids[0]}" prefect-server.log
wait_http "$FINGERSPELL_MLFLOW_TRACKING_URI/health" "${server_pids[1]}" mlflow-server.log

"$BIN/python" deployments/create_pools.py --local-only
"$BIN/prefect" --no-prompt deploy -n local
start worker.log "$BIN/prefect" worker start --pool local-process --type process
worker_pid=$started

cat <<INFO

Fingerspell's local stack is up (logs in $LOGS):
  Prefect UI   http://127.0.0.1:$PREFECT_PORT
  MLflow UI    $FINGERSPELL_MLFLOW_TRACKING_URI
  worker       pool local-process (pid $worker_pid)
Run the pipeline from another shell:
  PREFECT_API_URL=$PREFECT_API_URL $BIN/prefect deployment run 'pipeline/local' \\
    --params '{"params": {"profile": "smoke"}}' --watch
Ctrl-C stops everything.
INFO

# Until Ctrl-C, or until one of them dies (then stop the rest).
while kill -0 "$worker_pid" 2>/dev/null && kill -0 "${server_pids[0]}" 2>/dev/null \
  && kill -0 "${server_pids[1]}" 2>/dev/null; do
  sleep 2
done
echo "a process of the stack exited; see $LOGS" >&2
exit 1
