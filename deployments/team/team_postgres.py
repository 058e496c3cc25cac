"""Debian's PostgreSQL server, started by hand on 127.0.0.1 for the team stack.

The cluster lives in a folder of its own (``initdb`` the first time). PostgreSQL refuses to run
as root, so under root the cluster belongs to, and the server runs as, the ``postgres`` system
user. Each start sets a fresh random password on the stack's role and writes it to a libpq
password file (mode 0600): libpq (MLflow's psycopg2) and asyncpg (Prefect) read it through
``PGPASSFILE``, so the password is never in an argument, a URL, an environment variable or a
log line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROLE = "fingerspell"
DATABASES = ("prefect", "mlflow")


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The folder of ``initdb`` and ``postgres``: ``$PG_BINDIR``, Debian's newest, or the PATH.

    Raises:
        PostgresMissing: None found (``apt-get install postgresql``).
    """
    candidates = [Path(os.environ["PG_BINDIR"])] if os.environ.get("PG_BINDIR") else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if found := shutil.which("initdb"):
        candidates.append(Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresMissing(
        "PostgreSQL server binaries (initdb, postgres) not found: apt-get install postgresql, "
        "or set PG_BINDIR"
    )


def _os_user() -> str | None:
    """The system user to run the server as: ``postgres`` under root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


def cluster_dir(state: Path) -> Path:
    """Where the cluster lives for a stack whose state is in ``state``.

    Under root the ``postgres`` user may not reach ``state`` (pytest's temp folders are 0700),
    so the cluster goes to a folder of its own in the temp dir, the same one for the same state.
    """
    if _os_user() is None:
        return state / "postgres"
    import hashlib

    key = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"fingerspell-team-pg-{key}"


@dataclass(frozen=True)
class Postgres:
    """A started server: its process, port, and the files clients need."""

    process: subprocess.Popen
    port: int
    passfile: Path

    def url(self, database: str, driver: str = "postgresql") -> str:
        """A connection URL with no password in it (the password file supplies it)."""
        return f"{driver}://{ROLE}@127.0.0.1:{self.port}/{database}"


def _run(args: list[str], user: str | None, stdin: str | None = None) -> None:
    done = subprocess.run(
        args, input=stdin, capture_output=True, text=True, user=user, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr[-2000:]}")


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)


def start(state: Path, port: int, log: Path) -> Postgres:
    """Start (and on first use create) the cluster on 127.0.0.1:``port``; set a new password.

    Args:
        state: The stack's state folder; the password file goes to ``state/pgpass``.
        port: TCP port to listen on (loopback only).
        log: The server's log file.

    Returns:
        The running server; the caller stops it (SIGINT is its fast shutdown).
    """
    bindir, user = find_bindir(), _os_user()
    data = cluster_dir(state)
    sockets = data.parent / f"{data.name}-run"
    for folder in (data, sockets):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _chown(folder, user)
    if not (data / "PG_VERSION").is_file():
        # Local connections (the socket in `sockets`, 0700) by peer; TCP by password only.
        _run([str(bindir / "initdb"), "-D", str(data), "-E", "UTF8", "--no-instructions",
              "--auth-local=peer", "--auth-host=scram-sha-256"], user)  # fmt: skip
    handle = log.open("a")
    process = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockets}",
         "-c", "log_statement=none", "-c", "max_connections=200"],
        stdout=handle, stderr=subprocess.STDOUT, user=user, start_new_session=True,
    )  # fmt: skip
    _wait_ready(bindir, sockets, port, process, log)
    password = secrets.token_urlsafe(24)
    passfile = state / "pgpass"
    passfile.touch(mode=0o600)
    passfile.chmod(0o600)
    passfile.write_text(f"127.0.0.1:{port}:*:{ROLE}:{password}\n")
    # Over the private socket, as the cluster's owner; the SQL (and the password) on stdin.
    sql = [
        f"SELECT 'CREATE ROLE {ROLE} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{ROLE}') \\gexec",
        f"ALTER ROLE {ROLE} LOGIN PASSWORD '{password}';",
        *(
            f"SELECT 'CREATE DATABASE {db} OWNER {ROLE}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{db}') \\gexec"
            for db in DATABASES
        ),
    ]
    _run([str(bindir / "psql"), "-h", str(sockets), "-p", str(port), "-d", "postgres",
          "-X", "-q", "-v", "ON_ERROR_STOP=1"], user, "\n".join(sql) + "\n")  # fmt: skip
    return Postgres(process, port, passfile)


def _wait_ready(
    bindir: Path, sockets: Path, port: int, process: subprocess.Popen, log: Path
) -> None:
    owner = ["-U", user, "-d", "postgres"] if (user := _os_user()) else ["-d", "postgres"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited: {log.read_text()[-2000:]}")
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", str(sockets), "-p", str(port), *owner],
            check=False,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.3)
    raise TimeoutError(f"postgres not ready after 60 s: {log.read_text()[-2000:]}")
