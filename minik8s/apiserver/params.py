"""Query parameters as kube-apiserver reads them: a value of the wrong type is a 400 naming the
parameter, never an exception that escapes as a 500."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from minik8s.errors import BadRequest

MAX_INT64 = 2**63 - 1
GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def int_param(query: Mapping[str, str], name: str, minimum: int | None = None,
              fallback: Any = None) -> int | None:
    """`?name=` as an integer (None when absent and `fallback` is None); `fallback` is where a
    DeleteOptions body may carry the same field."""
    raw = query.get(name)
    value: Any = fallback if raw is None or raw == "" else raw
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise BadRequest(f'invalid {name} {value!r}: must be an integer')
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f'invalid {name} "{value}": must be an integer') from None
    if abs(number) > MAX_INT64:
        raise BadRequest(f'invalid {name} "{value}": out of the int64 range')
    if minimum is not None and number < minimum:
        raise BadRequest(f'invalid {name} "{value}": must be at least {minimum}')
    return number


def resource_version(query: Mapping[str, str]) -> str:
    """`?resourceVersion=`: empty, or an etcd revision (a non-negative integer)."""
    rv = query.get("resourceVersion") or ""
    if rv and not (rv.isascii() and rv.isdigit() and int(rv) <= MAX_INT64):
        raise BadRequest(f'invalid resourceVersion "{rv}": must be a non-negative integer')
    return rv


def bool_param(query: Mapping[str, str], name: str) -> bool:
    """`?name=` as Go's strconv.ParseBool reads it (kube-apiserver's query decoding)."""
    raw = query.get(name)
    if raw is None or raw == "" or raw in GO_FALSE:
        return False
    if raw in GO_TRUE:
        return True
    raise BadRequest(f'invalid {name} "{raw}": must be true or false')


def timeout_seconds(query: Mapping[str, str]) -> float | None:
    """`?timeoutSeconds=` of a watch: a non-negative number of seconds (clients send "300.0" too)."""
    raw = query.get("timeoutSeconds")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f'invalid timeoutSeconds "{raw}": must be a number of seconds') from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f'invalid timeoutSeconds "{raw}": must be a non-negative number of seconds')
    return value or None
