"""The Go tools (Centrifugo, Toxiproxy, Helm) are built at their pinned version and stamped with it:
a run that measured another version, or a binary reporting "git", would not compare."""

from __future__ import annotations

import stat
from pathlib import Path

from realchat.stack.gotool import CENTRIFUGO, HELM, TOXIPROXY, GoTool, parse_version


def test_the_build_is_pinned_and_stamps_its_version(tmp_path: Path) -> None:
    argv, env = CENTRIFUGO.build_command(tmp_path)
    assert argv[-1] == f"github.com/centrifugal/centrifugo/v6@v{CENTRIFUGO.version}"
    assert argv[argv.index("-ldflags") + 1] == (
        f"-X github.com/centrifugal/centrifugo/v6/internal/build.Version={CENTRIFUGO.version}"
    )
    assert env["GOBIN"] == str(tmp_path.resolve())
    assert "-mod=mod" in env["GOFLAGS"].split()
    assert CENTRIFUGO.binary(Path("rel")).is_absolute()


def test_a_main_package_below_the_module_root(tmp_path: Path) -> None:
    argv, _ = TOXIPROXY.build_command(tmp_path)
    assert argv[-1] == f"github.com/Shopify/toxiproxy/v2/cmd/server@v{TOXIPROXY.version}"
    assert TOXIPROXY.binary(tmp_path).name == "server"


def test_helm_is_stamped_as_its_releases_are(tmp_path: Path) -> None:
    """Helm's own builds say "v4.3.2"; `helm version --short` prints just that."""
    argv, _ = HELM.build_command(tmp_path)
    assert argv[-1] == f"helm.sh/helm/v4/cmd/helm@v{HELM.version}"
    assert argv[argv.index("-ldflags") + 1] == (
        f"-X helm.sh/helm/v4/internal/version.version=v{HELM.version}"
    )
    assert HELM.version_arguments == ("version", "--short")


def test_version_lines() -> None:
    assert parse_version("Centrifugo v6.9.1 (Go version: go1.26.8)") == "6.9.1"
    assert parse_version("toxiproxy-server version 2.5.0") == "2.5.0"
    assert parse_version("v4.3.2") == "4.3.2"
    assert parse_version("toxiproxy-server version git") is None
    assert parse_version("command not found") is None


def test_a_missing_binary_has_no_version(tmp_path: Path) -> None:
    assert CENTRIFUGO.installed_version(tmp_path) is None


def test_a_binary_of_the_pinned_version_is_not_rebuilt(tmp_path: Path) -> None:
    tool = GoTool(name="fake", module="example.com/fake", version="1.2.3")
    script = tmp_path / "fake"
    script.write_text("#!/bin/sh\necho fake v1.2.3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert tool.ensure_built(tmp_path, report=lambda line: None) == script.resolve()
