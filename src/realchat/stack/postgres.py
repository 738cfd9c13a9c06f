"""The project's own PostgreSQL cluster: own data dir, own port, run as the `postgres` user."""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from realchat.stack.component import ComponentNotReadyError
from realchat.stack.process import ProcessSpec, as_user
from realchat.stack.secrets import local_secret

#: PostgreSQL refuses to run as root; when we are root it runs as this Debian-created user.
SERVER_USER = "postgres"
SUPERUSER = "realchat"


def server_bin_dir() -> Path:
    """The newest installed server's bin dir (Debian keeps one per major version)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not candidates:
        raise RuntimeError("PostgreSQL server not installed (run `make deps`)")
    return Path(candidates[-1]).parent


def _server_user() -> str | None:
    return SERVER_USER if os.geteuid() == 0 else None


def _traversable_by(user: str, path: Path) -> bool:
    probe = ["test", "-x", str(path)]
    return subprocess.run(probe, check=False, **as_user(user)).returncode == 0


@dataclass
class Postgres:
    """A PostgreSQL server listening on loopback TCP only (no Unix socket), password-protected."""

    state_dir: Path
    host: str
    port: int
    database: str

    name: str = "postgres"
    #: SIGINT is PostgreSQL's fast shutdown: SIGTERM would wait for every client to leave.
    stop_signal: signal.Signals = signal.SIGINT
    stop_grace_s: float = 30.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "postgres.log"

    @property
    def data_dir(self) -> Path:
        """Inside the state dir when the server user can reach it, else a private dir elsewhere.

        A checkout under a home directory the `postgres` user may not enter would otherwise make
        initdb fail with a confusing permission error.
        """
        home = self.state_dir.resolve()
        user = _server_user()
        home.mkdir(parents=True, exist_ok=True)
        if user is None or _traversable_by(user, home):
            return home / "postgres"
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
        return Path("/var/lib/realchat") / digest / "postgres"

    @property
    def password(self) -> str:
        return local_secret(self.state_dir, "postgres-password")

    def dsn(self, database: str | None = None) -> str:
        db = database or self.database
        return f"postgresql://{SUPERUSER}:{self.password}@{self.host}:{self.port}/{db}"

    def prepare(self) -> None:
        data = self.data_dir
        if (data / "PG_VERSION").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o700)
        pwfile = data.parent / ".initdb-pw"
        pwfile.write_text(self.password + "\n")
        user = _server_user()
        if user is not None:
            os.chmod(data.parent, 0o755)
            os.chown(data, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            os.chown(pwfile, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        argv = [
            str(server_bin_dir() / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, check=False, cwd="/", **as_user(user)
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def process_spec(self) -> ProcessSpec:
        return ProcessSpec(
            argv=[
                str(server_bin_dir() / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=256MB",
                "-c",
                "log_min_messages=warning",
            ],
            log_path=self.log_path,
            cwd=Path("/"),
            user=_server_user(),
        )

    async def probe(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn("postgres"), timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise ComponentNotReadyError(f"cannot connect: {exc}") from exc
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    async def ensure_database(self, name: str | None = None) -> None:
        """Create the application database (or another one, for tests) if it is missing."""
        db = name or self.database
        conn = await asyncpg.connect(self.dsn("postgres"), timeout=5)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db):
                # Identifiers cannot be bound parameters; quote_ident makes the name safe.
                quoted = await conn.fetchval("SELECT quote_ident($1)", db)
                await conn.execute(f"CREATE DATABASE {quoted}")
        finally:
            await conn.close()
