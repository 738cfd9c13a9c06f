"""Checks shared by the tests of deployments/ (compose, Kubernetes) and of scripts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from realchat.config import Settings


def settings_field_exists(name: str) -> bool:
    """Whether the variable `name` sets a field of `Settings` (REALCHAT_<FIELD> or
    REALCHAT_<SECTION>__<FIELD>): `Settings` ignores unknown variables, so a typo would be
    silently dropped."""
    if not name.startswith("REALCHAT_") or name != name.upper():
        return False
    section, nested, field = name.removeprefix("REALCHAT_").lower().partition("__")
    info = Settings.model_fields.get(section)
    if info is None:
        return False
    annotation = info.annotation
    is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    if not nested:
        return not is_section
    return is_section and field in annotation.model_fields  # type: ignore[union-attr]


def load_script(path: Path) -> ModuleType:
    """A script that is not part of a package, imported as a module named after its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
