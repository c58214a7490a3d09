"""A throwaway PostgreSQL server for the warehouse tests (Debian's `postgresql` package).

The cluster lives in a temporary folder, listens on a free loopback port and is removed when
stopped. initdb and postgres refuse to run as root, so as root they run as `postgres` (the
user the package creates).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testkit.services import free_port, stop_process, wait_for_port

# Debian's layout: /usr/lib/postgresql/<major>/bin (bookworm: 15); the newest one found
_FOUND = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
BIN = Path(os.environ.get("POSTGRES_BIN") or (_FOUND[-1].parent if _FOUND
                                              else "/usr/lib/postgresql/15/bin"))
USER = "postgres"


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", USER, "--", *command] if os.geteuid() == 0 else command


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if not (BIN / "initdb").exists():
        return f"PostgreSQL is not installed ({BIN}/initdb): run bash scripts/setup-tests"
    return None


@dataclass
class PostgresServer:
    """A running cluster; `psql` runs a query as the superuser."""

    folder: Path
    port: int
    process: subprocess.Popen

    @classmethod
    def start(cls) -> PostgresServer:
        folder = Path(tempfile.mkdtemp(prefix="pg-"))
        if os.geteuid() == 0:
            shutil.chown(folder, USER)
        data = folder / "data"
        subprocess.run(_as_server_user([str(BIN / "initdb"), "-D", str(data), "-U", USER,
                                        "-A", "trust", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True)
        port = free_port()
        process = subprocess.Popen(
            _as_server_user([str(BIN / "postgres"), "-D", str(data), "-p", str(port),
                             "-k", str(folder), "-c", "listen_addresses=127.0.0.1",
                             "-c", "fsync=off", "-c", "synchronous_commit=off",
                             "-c", "full_page_writes=off"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port, process, "PostgreSQL")
        return cls(folder, port, process)

    def config(self, database: str = "postgres") -> dict[str, object]:
        """Connection settings as MeltanoLabs target-postgres reads them."""
        return {"host": "127.0.0.1", "port": self.port, "user": USER, "password": "unused",
                "database": database}

    def psql(self, query: str) -> list[list[str]]:
        """Rows of a query, each a list of column texts."""
        done = subprocess.run([str(BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", USER, "-d", "postgres", "-At", "-F", "\t", "-v",
                               "ON_ERROR_STOP=1", "-c", query],
                              capture_output=True, text=True, check=True)
        return [line.split("\t") for line in done.stdout.splitlines()]

    def stop(self) -> None:
        stop_process(self.process, grace_seconds=20)
        shutil.rmtree(self.folder, ignore_errors=True)
