"""The project's own PostgreSQL cluster: own data dir, own port, run as the `postgres` user."""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from realchat.stack.component import ComponentNotReadyError, ListensLocally
from realchat.stack.process import ProcessSpec, as_user, is_alive
from realchat.stack.secrets import local_secret, secret_path

#: PostgreSQL refuses to run as root; when we are root it runs as this Debian-created user.
SERVER_USER = "postgres"
SUPERUSER = "realchat"

#: Where a cluster lives when the server user cannot enter the state dir: one dir per state dir,
#: `<FALLBACK_ROOT>/<hash of the state dir's path>/`, linked from `<state_dir>/postgres`.
FALLBACK_ROOT = Path("/var/lib/realchat")
#: In a fallback dir: the state dir it belongs to (so orphans can be found and removed).
OWNER_FILE = "owner"
#: Beside the data: a fingerprint of the password the cluster was initialised with.
FINGERPRINT_FILE = "postgres-password.sha256"
PASSWORD_SECRET = "postgres-password"


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
    return subprocess.run(as_user(user, probe), check=False).returncode == 0


def fallback_home(state_dir: Path, root: Path = FALLBACK_ROOT) -> Path:
    """The fallback dir of a state dir (stable: derived from its absolute path)."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return root / digest


def _fingerprint(password: str) -> str:
    """The password is a random token, so a plain hash reveals nothing useful."""
    return hashlib.sha256(password.encode()).hexdigest()


def server_pid(data_dir: Path) -> int | None:
    """The pid of a server still running on `data_dir` (from its postmaster.pid), if any."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if is_alive(pid) else None


def _claimed_by_owner(home: Path) -> bool | None:
    """Whether the state dir named in `home`'s owner file still links to it (None: no owner
    file, e.g. a dir made by an older version or one being created right now)."""
    try:
        owner = Path((home / OWNER_FILE).read_text().strip())
    except OSError:
        return None
    link = owner / "postgres"
    return link.is_symlink() and Path(os.readlink(link)) == home / "postgres"


def sweep_orphans(root: Path = FALLBACK_ROOT, report: Callable[[str], None] = print) -> list[Path]:
    """Delete fallback dirs whose state dir is gone (deleted by hand, a test's tmp dir cleaned
    up): nothing can reach their data any more. Dirs without an owner file and clusters still
    running are left alone. Returns what was deleted."""
    removed: list[Path] = []
    with contextlib.suppress(FileNotFoundError):
        for home in sorted(root.iterdir()):
            if not home.is_dir() or _claimed_by_owner(home) is not False:
                continue
            if server_pid(home / "postgres") is not None:
                continue
            shutil.rmtree(home, ignore_errors=True)
            removed.append(home)
    if removed:
        report(f"removed {len(removed)} PostgreSQL data dir(s) of deleted state dirs in {root}")
    return removed


def _quiet(_: str) -> None:
    pass


@dataclass
class Postgres(ListensLocally):
    """A PostgreSQL server listening on loopback TCP only (no Unix socket), password-protected."""

    state_dir: Path
    host: str
    port: int
    database: str

    #: Progress lines (e.g. a stale cluster replaced); the supervisor passes its reporter.
    report: Callable[[str], None] = field(default=_quiet, repr=False, compare=False)
    fallback_root: Path = FALLBACK_ROOT

    name: str = "postgres"
    #: SIGINT is PostgreSQL's fast shutdown: SIGTERM would wait for every client to leave.
    stop_signal: signal.Signals = signal.SIGINT
    stop_grace_s: float = 30.0

    @functools.cached_property
    def home(self) -> Path:
        """The dir holding the data: the state dir when the server user can reach it, else its
        fallback dir (a checkout under a home directory, or a test's private tmp dir, would
        otherwise make initdb fail with a confusing permission error)."""
        state = self.state_dir.resolve()
        state.mkdir(parents=True, exist_ok=True)
        user = _server_user()
        if user is None or _traversable_by(user, state):
            return state
        return fallback_home(state, self.fallback_root)

    @property
    def data_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def in_fallback(self) -> bool:
        return self.home != self.state_dir.resolve()

    @property
    def password(self) -> str:
        return local_secret(self.state_dir, PASSWORD_SECRET)

    def dsn(self, database: str | None = None, port: int | None = None) -> str:
        """`port`: another way to the same server (a fault proxy's link)."""
        db = database or self.database
        return f"postgresql://{SUPERUSER}:{self.password}@{self.host}:{port or self.port}/{db}"

    def prepare(self) -> None:
        """Init the cluster the first time; re-init one left by a deleted state dir."""
        if self.in_fallback:
            sweep_orphans(self.fallback_root, self.report)
            self._claim_fallback()
        data = self.data_dir
        if (data / "PG_VERSION").exists():
            if self._cluster_matches():
                return
            self._discard_stale_cluster()
        self._initdb()

    def _claim_fallback(self) -> None:
        """Link `<state_dir>/postgres` to the fallback data, then record the owner: in that
        order, so a concurrent sweep never takes a dir being set up for an orphan."""
        link = self.state_dir.resolve() / "postgres"
        target = self.data_dir
        if link.is_symlink() and Path(os.readlink(link)) != target:
            link.unlink()
        if not link.is_symlink():
            if link.exists():
                raise RuntimeError(
                    f"{link} is a directory, but the {SERVER_USER} user cannot enter "
                    f"{self.state_dir.resolve()}: give it access or move that data away"
                )
            link.symlink_to(target)
        self.home.mkdir(parents=True, exist_ok=True)
        for dir_ in (self.fallback_root, self.home):
            os.chmod(dir_, 0o755)
        owner = self.home / OWNER_FILE
        if not owner.exists() or owner.read_text().strip() != str(self.state_dir.resolve()):
            tmp = owner.with_suffix(".tmp")
            tmp.write_text(f"{self.state_dir.resolve()}\n")
            os.replace(tmp, owner)

    def _cluster_matches(self) -> bool:
        """Whether the existing cluster was initialised with the current password secret.

        A secret younger than the cluster means the state dir was reset (or its secrets
        deleted) while the data survived out of it: the old cluster is unreachable and is
        replaced. An older secret that differs is an error: the data may matter, so nothing is
        deleted.
        """
        fingerprint = self.home / FINGERPRINT_FILE
        current = _fingerprint(self.password)
        try:
            recorded: str | None = fingerprint.read_text().strip()
        except FileNotFoundError:
            recorded = None
        if recorded == current:
            return True
        secret = secret_path(self.state_dir, PASSWORD_SECRET)
        if secret.stat().st_mtime_ns > (self.data_dir / "PG_VERSION").stat().st_mtime_ns:
            return False
        if recorded is None:
            fingerprint.write_text(current + "\n")  # a cluster from before fingerprints
            return True
        raise RuntimeError(
            f"PostgreSQL data in {self.data_dir} was initialised with another password than "
            f"{secret}; restore that file, or delete everything with `realchat stack reset`"
        )

    def _discard_stale_cluster(self) -> None:
        pid = server_pid(self.data_dir)
        if pid is not None:
            raise RuntimeError(
                f"a PostgreSQL server (pid {pid}) still runs on {self.data_dir}, left by an "
                "earlier stack whose state was deleted; stop it first"
            )
        self.report(
            f"postgres   data in {self.data_dir} belongs to an earlier state of "
            f"{self.state_dir} (its password secret is gone); initialising a new cluster"
        )
        shutil.rmtree(self.data_dir)
        (self.home / FINGERPRINT_FILE).unlink(missing_ok=True)

    def _initdb(self) -> None:
        data = self.data_dir
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
                as_user(user, argv), capture_output=True, text=True, check=False, cwd="/"
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        (self.home / FINGERPRINT_FILE).write_text(_fingerprint(self.password) + "\n")

    def remove_data(self) -> Path | None:
        """Delete the cluster's data wherever it lives (the fallback dir included); the server
        must be stopped. Returns the dir deleted, if there was one."""
        state = self.state_dir.resolve()
        link = state / "postgres"
        if link.is_symlink():
            home = Path(os.readlink(link)).parent
        elif link.is_dir():
            home = state
        else:  # no link: a fallback made by an older version may still exist
            home = fallback_home(state, self.fallback_root)
        data = home / "postgres"
        if (pid := server_pid(data)) is not None:
            raise RuntimeError(f"PostgreSQL (pid {pid}) still runs on {data}; stop it first")
        if home == state:
            removed = data if data.exists() else None
            shutil.rmtree(data, ignore_errors=True)
            (home / FINGERPRINT_FILE).unlink(missing_ok=True)
        else:
            if home.parent != self.fallback_root:
                raise RuntimeError(f"{link} points outside {self.fallback_root}; not deleting")
            removed = home if home.exists() else None
            shutil.rmtree(home, ignore_errors=True)
        if link.is_symlink():
            link.unlink()
        return removed

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
