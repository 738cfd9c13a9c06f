"""What a stack leaves behind: every process of its components (their process groups and all
their descendants, not only the pids the supervisor records) and the ports they listen on."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

from realchat.stack.process import is_alive


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of a live process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[2])


def process_tree(pids: Iterable[int]) -> set[int]:
    """`pids`, every member of the process groups they lead, and all their descendants."""
    roots = set(pids)
    table = {
        pid: st
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        if (st := _stat(pid := int(p.name)))
    }
    found = {pid for pid, (_, group) in table.items() if group in roots} | roots
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def alive(pids: Iterable[int]) -> list[int]:
    return sorted(pid for pid in pids if is_alive(pid))


def _socket_inodes(pids: Iterable[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_ports(pids: Iterable[int]) -> set[int]:
    """TCP ports the processes listen on (from /proc/net/tcp{,6}, matched by socket inode)."""
    inodes = _socket_inodes(pids)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def unbindable(ports: Iterable[int]) -> list[int]:
    """The ports of `ports` a new server could not listen on right now (SO_REUSEADDR, as
    servers do: closed connections lingering in TIME_WAIT do not count, a listener does)."""
    taken = []
    for port in sorted(ports):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
            except OSError:
                taken.append(port)
    return taken
