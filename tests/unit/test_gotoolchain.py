"""The Go that builds the pinned tools: the machine's when recent enough, else the pinned
toolchain module, checked and unpacked with its file modes."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest

from realchat.stack import gotoolchain
from realchat.stack.gotoolchain import (
    GoToolchainError,
    module_proxy,
    parse_go_version,
    toolchain_url,
)

PREFIX = "golang.org/toolchain@v0.0.1-go1.26.8.linux-amd64/"


def _zip(entries: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            zipped.writestr(info, data)
    return buffer.getvalue()


def test_go_versions_compare_by_major_and_minor() -> None:
    assert parse_go_version("go1.26.8\n") == (1, 26)
    assert parse_go_version("go1.19.8") == (1, 19) < gotoolchain.MINIMUM
    assert parse_go_version("") is None


def test_the_first_http_proxy_of_goproxy_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOPROXY", "https://mirror.example/go/,https://proxy.golang.org,direct")
    assert module_proxy() == "https://mirror.example/go"
    monkeypatch.setenv("GOPROXY", "direct")
    assert module_proxy() == "https://proxy.golang.org"
    assert toolchain_url("https://p", "1.26.8", "amd64") == (
        "https://p/golang.org/toolchain/@v/v0.0.1-go1.26.8.linux-amd64.zip"
    )


def test_the_toolchain_is_checked_then_unpacked_with_its_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = _zip(
        {
            PREFIX + "bin/go": (b"#!/bin/sh\necho go1.26.8\n", 0o755),
            PREFIX + "src/fmt/print.go": (b"package fmt\n", 0o644),
        }
    )
    served = tmp_path / "served.zip"
    served.write_bytes(payload)
    monkeypatch.setattr(gotoolchain, "local_go", lambda: None)
    monkeypatch.setattr(gotoolchain, "architecture", lambda: "amd64")
    monkeypatch.setattr(gotoolchain, "toolchain_url", lambda *_: served.as_uri())
    monkeypatch.setattr(gotoolchain, "ZIP_SHA256", {"amd64": "0" * 64})
    with pytest.raises(GoToolchainError, match="SHA-256"):
        gotoolchain.go_binary(tmp_path / "cache", report=lambda _: None)
    assert not (tmp_path / "cache" / "go1.26.8").exists(), "nothing unchecked is kept"

    digest = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(gotoolchain, "ZIP_SHA256", {"amd64": digest})
    go = Path(gotoolchain.go_binary(tmp_path / "cache", report=lambda _: None))
    assert go == (tmp_path / "cache" / "go1.26.8" / "bin" / "go").resolve()
    assert go.stat().st_mode & 0o777 == 0o755
    assert (go.parents[1] / "src" / "fmt" / "print.go").stat().st_mode & 0o777 == 0o644
    assert list((tmp_path / "cache").iterdir()) == [go.parents[1]], "no download left behind"
    served.unlink()  # the second call uses what is unpacked
    assert gotoolchain.go_binary(tmp_path / "cache", report=lambda _: None) == str(go)


def test_a_path_leaving_the_toolchain_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = _zip({PREFIX + "../../escaped": (b"x", 0o644)})
    served = tmp_path / "served.zip"
    served.write_bytes(payload)
    monkeypatch.setattr(gotoolchain, "local_go", lambda: None)
    monkeypatch.setattr(gotoolchain, "architecture", lambda: "amd64")
    monkeypatch.setattr(gotoolchain, "toolchain_url", lambda *_: served.as_uri())
    monkeypatch.setattr(gotoolchain, "ZIP_SHA256", {"amd64": hashlib.sha256(payload).hexdigest()})
    with pytest.raises(GoToolchainError, match="unsafe path"):
        gotoolchain.go_binary(tmp_path / "cache", report=lambda _: None)
    assert not (tmp_path / "escaped").exists()
