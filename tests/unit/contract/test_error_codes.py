"""Each error code is written once, in `contract/error_codes.py`: the code that raises or matches
one names the `ErrorCode` member, so a code cannot be misspelt in one place and a client cannot
be told a code the contract does not list."""

from __future__ import annotations

import ast
from pathlib import Path

from realchat.contract.error_codes import ErrorCode, invalid

SOURCE = Path(__file__).resolve().parents[3] / "src" / "realchat"
DEFINED_IN = SOURCE / "contract" / "error_codes.py"


def literal_codes(path: Path) -> set[str]:
    """The error codes written as string literals in `path`, dictionary keys of rows
    (`row["blocked"]`) aside."""
    tree = ast.parse(path.read_text(), str(path))
    subscripts = {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    values = {code.value for code in ErrorCode}
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in values and id(node) not in subscripts
    }


def test_no_module_writes_an_error_code_out() -> None:
    found = {
        (str(path.relative_to(SOURCE)), code)
        for path in SOURCE.rglob("*.py")
        if path != DEFINED_IN and "/v1/" not in path.as_posix()
        for code in literal_codes(path)
    }
    assert found == set(), sorted(found)


def test_each_code_is_snake_case_and_unique() -> None:
    values = [code.value for code in ErrorCode]
    assert len(set(values)) == len(values)
    for code in ErrorCode:
        assert code.value == code.name.lower()


def test_a_field_is_named_by_its_code_and_an_unknown_one_is_invalid_request() -> None:
    assert invalid("content") is ErrorCode.INVALID_CONTENT
    assert invalid("no_such_field") is ErrorCode.INVALID_REQUEST
