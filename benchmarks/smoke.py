"""`--smoke` for every benchmark: the smallest sizes, a few seconds, to prove the script still runs.

`make test` runs each benchmark this way (tests/e2e/test_benchmarks.py) and checks only that it
completes and prints its ratio, never the numbers: a benchmark nobody runs rots.
"""

from __future__ import annotations

import argparse
from typing import Any


def parse(parser: argparse.ArgumentParser, **smallest: Any) -> argparse.Namespace:
    """`parser.parse_args()` plus `--smoke`, which sets each named option to its smallest useful value."""
    names = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in smallest.items())
    parser.add_argument("--smoke", action="store_true", help=f"a quick run to check the script works ({names})")
    args = parser.parse_args()
    if args.smoke:
        for key, value in smallest.items():
            setattr(args, key, value)
    return args
