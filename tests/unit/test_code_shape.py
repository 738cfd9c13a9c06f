"""The package stays readable in pieces: no module over 500 lines, no function over 60 (an
argument parser, a flat list of options, aside; generated protobuf code aside)."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "realchat"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
#: Functions that are one flat declaration, not logic.
ARGUMENT_PARSERS = {("cli.py", "build_parser")}


def modules() -> list[Path]:
    return [p for p in SOURCE.rglob("*.py") if "v1" not in p.relative_to(SOURCE).parts]


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(SOURCE)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                where = (str(path.relative_to(SOURCE)), node.name)
                if lines > MAX_FUNCTION_LINES and where not in ARGUMENT_PARSERS:
                    long[where] = lines
    assert long == {}
