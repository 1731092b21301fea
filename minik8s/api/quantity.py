"""Kubernetes resource quantities: `100m`, `1`, `0.5`, `128Mi`, `1G`, `2e3`."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}
_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


class QuantityError(ValueError):
    pass


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity's value in base units; raises QuantityError on anything else."""
    if isinstance(value, bool):
        raise QuantityError(f'"{value}" is not a quantity')
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    m = _RE.match(text)
    if not m:
        raise QuantityError(f'"{value}" is not a quantity (examples: 500m, 1, 128Mi, 1G)')
    number, suffix = m.group(1), m.group(2) or ""
    if "e" in number.lower() and suffix:
        raise QuantityError(f'"{value}" is not a quantity')
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise QuantityError(f'"{value}" is not a quantity') from exc
    mult = Decimal(_BINARY[suffix]) if suffix in _BINARY else _DECIMAL[suffix]
    result = base * mult
    if result < 0:
        raise QuantityError(f'"{value}" must not be negative')
    return result


def cpu_millis(value: str | int | float) -> int:
    """CPU quantity in millicores (`500m` → 500, `2` → 2000)."""
    return int((parse_quantity(value) * 1000).to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(value: str | int | float) -> int:
    """Memory quantity in bytes (`128Mi` → 134217728)."""
    return int(parse_quantity(value).to_integral_value(rounding="ROUND_CEILING"))


def format_cpu(millis: int) -> str:
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def format_memory(nbytes: int) -> str:
    for suffix in ("Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if nbytes % unit == 0 and nbytes >= unit:
            return f"{nbytes // unit}{suffix}"
    return str(nbytes)
