"""The Go toolchain that builds the pinned Go tools (`gotool.py`): the machine's own `go` when it
is recent enough, else the Go team's toolchain module fetched once from the Go module proxy.

Why: Helm 4 needs Go 1.26, and a fresh Debian 12 machine has no Go or Debian's 1.19, which
cannot fetch a newer toolchain by itself (`GOTOOLCHAIN` came with Go 1.21). The module proxy
serves every Go release as `golang.org/toolchain@v0.0.1-go<version>.<os>-<arch>`, a zip of the
release; the one pinned here is checked against its SHA-256 before it is used.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

Reporter = Callable[[str], None]

#: The oldest Go that builds every pinned tool (Helm 4.3 asks for 1.26).
MINIMUM = (1, 26)
#: The release fetched when the machine's Go is missing or older.
VERSION = "1.26.8"
#: SHA-256 of the toolchain module's zip, per architecture (others need a local Go).
ZIP_SHA256 = {"amd64": "30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7"}
DEFAULT_PROXY = "https://proxy.golang.org"

#: Every file of the toolchain zip is under `golang.org/toolchain@<version>/`.
_ZIP_ROOT = "golang.org/toolchain@"
_GO_VERSION = re.compile(r"go(\d+)\.(\d+)")


class GoToolchainError(RuntimeError):
    """No usable Go; the message says why."""


def parse_go_version(output: str) -> tuple[int, int] | None:
    """`go1.26.8` (what `go env GOVERSION` prints) as (1, 26)."""
    found = _GO_VERSION.search(output)
    return (int(found[1]), int(found[2])) if found else None


def local_go() -> str | None:
    """The machine's `go`, if it is at least `MINIMUM`."""
    go = shutil.which("go")
    if go is None:
        return None
    try:
        result = subprocess.run(
            [go, "env", "GOVERSION"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "GOTOOLCHAIN": "local"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = parse_go_version(result.stdout)
    return go if found is not None and found >= MINIMUM else None


def module_proxy() -> str:
    """The first proxy of `GOPROXY` (the module proxy when it names none)."""
    for entry in os.environ.get("GOPROXY", DEFAULT_PROXY).replace("|", ",").split(","):
        if entry.startswith(("http://", "https://")):
            return entry.rstrip("/")
    return DEFAULT_PROXY


def architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def toolchain_url(proxy: str, version: str, arch: str) -> str:
    return f"{proxy}/golang.org/toolchain/@v/v0.0.1-go{version}.linux-{arch}.zip"


def go_binary(cache_root: Path, report: Reporter) -> str:
    """A `go` command that builds the pinned tools: the machine's, or the pinned toolchain
    unpacked under `cache_root` (fetched and checked the first time)."""
    if (found := local_go()) is not None:
        return found
    root = (cache_root / f"go{VERSION}").resolve()
    go = root / "bin" / "go"
    if go.is_file():
        return str(go)
    arch = architecture()
    if arch not in ZIP_SHA256:
        raise GoToolchainError(
            f"no Go >= {MINIMUM[0]}.{MINIMUM[1]} here, and no pinned toolchain for linux-{arch}: "
            "install Go (https://go.dev/dl/)"
        )
    url = toolchain_url(module_proxy(), VERSION, arch)
    report(f"fetching Go {VERSION} from the module proxy into {root} ...")
    cache_root.mkdir(parents=True, exist_ok=True)
    archive = cache_root / f"go{VERSION}.linux-{arch}.zip.part"
    try:
        _download(url, archive, ZIP_SHA256[arch])
        _unpack(archive, root)
    finally:
        archive.unlink(missing_ok=True)
    return str(go)


def _download(url: str, target: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=300) as reply, target.open("wb") as out:
        while chunk := reply.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        raise GoToolchainError(f"{url}: SHA-256 {digest.hexdigest()}, expected {sha256}")


def _unpack(archive: Path, root: Path) -> None:
    """The zip's files (under `_ZIP_ROOT<version>/`) into `root`, with their modes;
    into a temporary directory first, so an interrupted unpack is never taken for a toolchain."""
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.infolist():
            if not member.filename.startswith(_ZIP_ROOT) or member.is_dir():
                continue
            relative = member.filename.removeprefix(_ZIP_ROOT).partition("/")[2]
            if not relative:
                continue
            path = partial / relative
            if partial.resolve() not in path.resolve().parents:
                raise GoToolchainError(f"unsafe path in the toolchain zip: {member.filename}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(member) as source, path.open("wb") as out:
                shutil.copyfileobj(source, out)
            mode = (member.external_attr >> 16) & 0o777
            path.chmod(mode or 0o644)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
