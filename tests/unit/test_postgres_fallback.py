"""Which fallback data dirs a sweep deletes: only those no state dir links to any more."""

from __future__ import annotations

import os
from pathlib import Path

from realchat.stack.postgres import OWNER_FILE, fallback_home, sweep_orphans


def fallback_of(root: Path, state: Path, *, linked: bool, owner: bool = True) -> Path:
    home = fallback_home(state, root)
    (home / "postgres").mkdir(parents=True)
    if owner:
        (home / OWNER_FILE).write_text(f"{state.resolve()}\n")
    state.mkdir(parents=True, exist_ok=True)
    if linked:
        (state / "postgres").symlink_to(home / "postgres")
    return home


def test_sweep_deletes_only_dirs_whose_state_dir_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "fallback"
    in_use = fallback_of(root, tmp_path / "kept", linked=True)
    orphan = fallback_of(root, tmp_path / "deleted", linked=False)
    unknown = fallback_of(root, tmp_path / "older", linked=False, owner=False)
    running = fallback_of(root, tmp_path / "running", linked=False)
    (running / "postgres" / "postmaster.pid").write_text(f"{os.getpid()}\n")

    assert sweep_orphans(root, report=lambda _: None) == [orphan]
    assert in_use.exists()
    assert unknown.exists()
    assert running.exists()
    assert not orphan.exists()


def test_a_state_dir_relinked_elsewhere_leaves_its_old_dir_an_orphan(tmp_path: Path) -> None:
    root = tmp_path / "fallback"
    state = tmp_path / "state"
    home = fallback_of(root, state, linked=True)
    (state / "postgres").unlink()
    (state / "postgres").symlink_to(tmp_path / "somewhere-else")
    assert sweep_orphans(root, report=lambda _: None) == [home]


def test_fallback_dir_is_stable_per_state_dir(tmp_path: Path) -> None:
    root = tmp_path / "fallback"
    assert fallback_home(tmp_path / "a", root) == fallback_home(tmp_path / "a" / ".", root)
    assert fallback_home(tmp_path / "a", root) != fallback_home(tmp_path / "b", root)
