"""The local terminal for `exec -t` / `attach -t`: raw mode while the session runs, resizes sent on SIGWINCH."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from types import FrameType


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@contextlib.contextmanager
def raw_terminal(on_resize: Callable[[int, int], None]) -> Iterator[None]:
    """Keys go to the remote side as typed (Ctrl-C included); the window size follows the local one."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)

    def resized(_signum: int = 0, _frame: FrameType | None = None) -> None:
        size = os.get_terminal_size(fd)  # the terminal itself, not $COLUMNS/$LINES
        on_resize(size.columns, size.lines)

    previous = signal.signal(signal.SIGWINCH, resized)
    try:
        tty.setraw(fd)
        resized()
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
