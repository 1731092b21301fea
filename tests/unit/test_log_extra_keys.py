"""`log.info(..., extra={...})` with a key LogRecord already has ("created", "name", ...) raises
KeyError at run time, on the path that logs: a static check over the source catches it first."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESERVED = set(vars(logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None))) | {"message", "asctime"}


def extra_keys(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                    found += [(node.lineno, k.value) for k in kw.value.keys
                              if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return found


def test_no_log_call_passes_a_reserved_logrecord_attribute_in_extra() -> None:
    clashes = [f"{path.relative_to(REPO)}:{line}: extra key {key!r}"
               for top in ("minik8s", "actors", "cli")
               for path in sorted((REPO / top).rglob("*.py"))
               for line, key in extra_keys(ast.parse(path.read_text()))
               if key in RESERVED]
    assert not clashes, "\n".join(clashes)


def test_the_check_sees_a_clash() -> None:
    assert extra_keys(ast.parse('log.info("x", extra={"created": 1, "ok": 2})')) == [(1, "created"), (1, "ok")]
    assert "created" in RESERVED and "name" in RESERVED
