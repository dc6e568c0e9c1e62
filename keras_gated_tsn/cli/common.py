"""What every subcommand shares: the one error path and argument types."""

from __future__ import annotations

import argparse
import functools
import math
import sys

#: Errors that bad input raises (a missing or malformed file, a value out of
#: range, a missing optional package): a message and exit status 2, no traceback.
BAD_INPUT = (ValueError, FileNotFoundError, NotADirectoryError, FileExistsError, ImportError, OSError)


def with_error_path(command: str, run):
    """Wraps a subcommand's ``run(args) -> int``: bad input (:data:`BAD_INPUT`)
    becomes ``gated-tsn COMMAND: error: ...`` on stderr and exit status 2;
    Ctrl-C stops with status 130 and one line, not a traceback."""

    @functools.wraps(run)
    def wrapped(args) -> int:
        try:
            return int(run(args) or 0)
        except BAD_INPUT as error:
            print(f"gated-tsn {command}: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"gated-tsn {command}: interrupted", file=sys.stderr)
            return 130

    return wrapped


def int_at_least(minimum: int):
    """An argparse ``type``: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def _finite_float(condition, expected: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and condition(value)):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


#: An argparse ``type``: a finite number > 0.
positive_float = _finite_float(lambda value: value > 0, "a positive number")
#: An argparse ``type``: a finite number >= 0.
non_negative_float = _finite_float(lambda value: value >= 0, "a number >= 0")
#: An argparse ``type``: a number in [0, 1) (a dropout ratio, a fraction).
ratio = _finite_float(lambda value: 0 <= value < 1, "a number in [0, 1)")


def quality(text: str) -> int:
    """An argparse ``type``: a JPEG quality 0-100."""
    value = int_at_least(0)(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"expected 0-100, got {value}")
    return value
