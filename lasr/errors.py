"""User-facing errors.

A :class:`LasrError` says what input was wrong and how to fix it. Entry points
(``python -m preprocess``, ``python -m lasr.optimize``) catch it, print the message
and exit with status 2 instead of showing a traceback from deep inside a library.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

__all__ = ["LasrError", "InputError", "ConfigError", "Problems", "exit_on_user_error"]


class LasrError(Exception):
    """An error whose message is meant for the user (bad input, missing weights...)."""


class InputError(LasrError):
    """The input data (video, frames, masks) cannot be used as given."""


class ConfigError(LasrError):
    """Configuration values out of their range; ``problems`` holds one line per key,
    each naming the key, its value and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = self.problems
        super().__init__(lines[0] if len(lines) == 1 else "invalid configuration:\n  " + "\n  ".join(lines))


class Problems:
    """Collects the out-of-range values of a config (``Problems().at_least(...)``), then
    :meth:`raise_any` raises one :class:`ConfigError` listing all of them."""

    def __init__(self):
        self.lines: list[str] = []

    def add(self, key: str, value, fix: str) -> None:
        self.lines.append(f"{key}={value}: {fix}")

    def at_least(self, key: str, value, minimum, meaning: str, none_ok: Optional[str] = None) -> None:
        """``value`` must be a number >= ``minimum`` (or None when ``none_ok`` says what None means)."""
        if value is None:
            if none_ok is None:
                self.add(key, "null", f"must be a number >= {minimum} ({meaning})")
            return
        if not _finite(value) or value < minimum:
            extra = f", or null ({none_ok})" if none_ok else ""
            self.add(key, value, f"must be >= {minimum} ({meaning}){extra}")

    def within(self, key: str, value, low, high, meaning: str) -> None:
        """``value`` must lie in ``[low, high]``."""
        if value is None or not _finite(value) or not low <= value <= high:
            self.add(key, value, f"must lie in [{low}, {high}] ({meaning})")

    def positive(self, key: str, value, meaning: str) -> None:
        """``value`` must be a finite number > 0."""
        if value is None or not _finite(value) or value <= 0:
            self.add(key, value, f"must be > 0 ({meaning})")

    def raise_any(self) -> None:
        if self.lines:
            raise ConfigError(self.lines)


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a :class:`LasrError` into ``error: <message>`` on stderr and exit code 2."""
    try:
        yield
    except LasrError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
