"""A child process of the stack: spawned in its own session, logged to a file, surely stopped."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: the argv, its environment additions, and the unprivileged user if any."""

    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    #: Run as this user (needed for PostgreSQL, which refuses to run as root).
    user: str | None = None


def spawn(spec: ProcessSpec) -> subprocess.Popen[bytes]:
    """Start the process detached from our terminal and session.

    The caller keeps the returned handle while it lives (dropping it while the child runs is
    reported as a leak by Python); a detached stack hands the children over to init.

    Its own session means a Ctrl-C at the terminal reaches only the supervisor, which then stops
    the components in order instead of all at once.
    """
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(spec.env or {})}
    with open(spec.log_path, "ab") as log:
        return subprocess.Popen(
            as_user(spec.user, spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=spec.cwd,
            env=env,
            start_new_session=True,
        )


def installed(program: str, *also: Path) -> str:
    """The path of `program` (on PATH, else the first of `also` that exists); a clear error
    when `make deps` has not installed it."""
    found = shutil.which(program) or next((str(p) for p in also if p.exists()), None)
    if found is None:
        raise RuntimeError(f"{program} not installed (run `make deps`)")
    return found


def as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` run as `user` when we are root (unchanged otherwise), through util-linux's
    `setpriv`.

    Why not Popen's `user=`: it makes Python fork() instead of vfork(), and a fork of a process
    that has gRPC loaded runs gRPC's fork handlers in the child before the exec; under load
    they crashed it (PostgreSQL "killed by SIGSEGV" while starting, a gRPC poller error in its
    log). `setpriv` drops the privileges after the exec instead."""
    if user is None or os.geteuid() != 0:
        return list(argv)
    entry = pwd.getpwnam(user)
    return [
        "setpriv",
        f"--reuid={entry.pw_uid}",
        f"--regid={entry.pw_gid}",
        "--clear-groups",
        "--",
        *argv,
    ]


def describe_exit(returncode: int) -> str:
    """How a child ended, from its `Popen.returncode` (negative: the signal that ended it)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with status {returncode}"


def is_alive(pid: int) -> bool:
    """True while `pid` runs; an exited process not yet reaped (a zombie) counts as gone.

    It never reaps: the owner of the `Popen` handle does, so exit codes are not stolen from it.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """An exited process nobody reaped yet (our parent may not be a reaping init).

    A multi-threaded process shows its leader as a zombie while other threads are still exiting
    and holding its sockets; only once they are gone is the process really over.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z" and threads <= 1


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group the component leads (e.g. a server and its workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send `sig` to the component, without waiting (failure tests use this)."""
    _signal_group(pid, sig)


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until the process and its group are gone; True if they are."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_alive(pid) and not _group_alive(pid):
            return True
        time.sleep(0.05)
    return not is_alive(pid) and not _group_alive(pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A group whose only member is a zombie leader is gone for our purposes.
    return is_alive(pgid) or _has_live_member(pgid)


def _has_live_member(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop(pid: int, *, sig: signal.Signals = signal.SIGTERM, grace_s: float = 20.0) -> bool:
    """Ask politely, wait `grace_s`, then SIGKILL. True if it went away within the grace."""
    _signal_group(pid, sig)
    if wait_gone(pid, grace_s):
        return True
    _signal_group(pid, signal.SIGKILL)
    wait_gone(pid, 5.0)
    return False


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, for error reports."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log yet)"
    return "\n".join(data.splitlines()[-lines:])


_ERROR_MARKERS = ("FATAL", "ERROR", "Exception", "Error:")


def first_error(path: Path, context: int = 2) -> str | None:
    """The first lines of a log that look like the cause of a failure (tails show the aftermath):
    the first error line and the `context` lines after it, where the reason usually stands."""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for i, line in enumerate(lines):
        if any(marker in line for marker in _ERROR_MARKERS):
            return "\n".join(lines[i : i + 1 + context])
    return None


def failure_report(path: Path, lines: int = 20) -> str:
    cause = first_error(path)
    head = f"first error: {cause}\n" if cause else ""
    return f"{head}last log lines ({path}):\n{tail(path, lines)}"
