"""Tools written in Go (the Centrifugo peer, the Toxiproxy fault proxy, Helm), built once from
the Go module proxy at a pinned version into `.cache/<tool>/` and reused while the version matches.

Pinned so that runs compare; never committed. A build needs Go once (`go install` of the module;
`gotoolchain.py` fetches a pinned Go when the machine has none recent enough):
the tools serve benchmarks, failure injection and the offline checks of the Helm chart, not the
services.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from realchat.stack.gotoolchain import GoToolchainError, go_binary

BUILD_TIMEOUT_S = 1800.0

Reporter = Callable[[str], None]

#: `centrifugo version` prints `Centrifugo v6.9.1 (...)`, `toxiproxy -version` prints
#: `toxiproxy-server version 2.5.0`, `helm version --short` prints `v4.3.2`: the first dotted
#: version number on the line.
_VERSION = re.compile(r"v?(\d+\.\d+\.\d+\S*)")


class GoToolError(RuntimeError):
    """A tool could not be built; the message says why."""


def parse_version(output: str) -> str | None:
    found = _VERSION.search(output)
    return found[1] if found else None


@dataclass(frozen=True)
class GoTool:
    """One pinned Go program: where its `main` package lives and how it reports its version."""

    name: str
    module: str
    version: str
    #: The `main` package inside the module ("" for the module's root).
    package: str = ""
    #: The file name `go install` gives the binary (its package directory's name).
    binary_name: str = ""
    #: The variable the build stamps with `version` (without it, the binary reports "git"/0.0.0).
    version_variable: str = ""
    #: What the stamped value puts before `version` (Helm's releases say "v4.3.2").
    version_prefix: str = ""
    #: The arguments that make the binary print its version.
    version_arguments: tuple[str, ...] = ("version",)

    @property
    def ldflags(self) -> str:
        if not self.version_variable:
            return ""
        return f"-X {self.version_variable}={self.version_prefix}{self.version}"

    def binary(self, cache_dir: Path) -> Path:
        """Absolute: servers may run in a work directory of their own."""
        return (cache_dir / (self.binary_name or self.name)).resolve()

    def installed_version(self, cache_dir: Path) -> str | None:
        binary = self.binary(cache_dir)
        if not binary.is_file():
            return None
        try:
            result = subprocess.run(
                [str(binary), *self.version_arguments],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_version(result.stdout + result.stderr)

    def build_command(self, cache_dir: Path, go: str = "go") -> tuple[list[str], dict[str, str]]:
        """`go install` of the pinned module into `cache_dir` (GOBIN must be absolute), with
        the toolchain `go` as it is (no switching to another one)."""
        flags = f"{os.environ.get('GOFLAGS', '')} -mod=mod".strip()  # keeps e.g. -modcacherw
        env = {
            **os.environ,
            "GOBIN": str(cache_dir.resolve()),
            "GOFLAGS": flags,
            "GOTOOLCHAIN": "local",
        }
        target = f"{self.module}/{self.package}" if self.package else self.module
        ldflags = ["-ldflags", self.ldflags] if self.ldflags else []
        return [go, "install", *ldflags, f"{target}@v{self.version}"], env

    def ensure_built(self, cache_dir: Path, report: Reporter) -> Path:
        """The pinned binary, built first when it is missing or another version."""
        binary = self.binary(cache_dir)
        if (found := self.installed_version(cache_dir)) == self.version:
            return binary
        try:
            go = go_binary(cache_dir.parent, report)
        except (GoToolchainError, OSError) as exc:
            raise GoToolError(f"no Go to build {self.name} with: {exc}") from exc
        report(f"building {self.name} {self.version} into {cache_dir} (found: {found}) ...")
        cache_dir.mkdir(parents=True, exist_ok=True)
        argv, env = self.build_command(cache_dir, go)
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            raise GoToolError(f"go install failed ({result.returncode}): {result.stderr[-2000:]}")
        if (built := self.installed_version(cache_dir)) != self.version:
            raise GoToolError(f"built {self.name} reports version {built}, not {self.version}")
        return binary


CENTRIFUGO = GoTool(
    name="centrifugo",
    module="github.com/centrifugal/centrifugo/v6",
    version="6.9.1",
    version_variable="github.com/centrifugal/centrifugo/v6/internal/build.Version",
)

TOXIPROXY = GoTool(
    name="toxiproxy",
    module="github.com/Shopify/toxiproxy/v2",
    version="2.5.0",
    package="cmd/server",
    binary_name="server",
    version_variable="github.com/Shopify/toxiproxy/v2.Version",
    version_arguments=("-version",),
)

HELM = GoTool(
    name="helm",
    module="helm.sh/helm/v4",
    version="4.3.2",
    package="cmd/helm",
    version_variable="helm.sh/helm/v4/internal/version.version",
    version_prefix="v",
    version_arguments=("version", "--short"),
)
