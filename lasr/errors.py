"""User-facing errors.

A :class:`LasrError` says what input was wrong and how to fix it. Entry points
(``python -m preprocess``, ``python -m lasr.optimize``) catch it, print the message
and exit with status 2 instead of showing a traceback from deep inside a library.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

__all__ = ["LasrError", "InputError", "exit_on_user_error"]


class LasrError(Exception):
    """An error whose message is meant for the user (bad input, missing weights...)."""


class InputError(LasrError):
    """The input data (video, frames, masks) cannot be used as given."""


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a :class:`LasrError` into ``error: <message>`` on stderr and exit code 2."""
    try:
        yield
    except LasrError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
