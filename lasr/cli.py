"""What the commands check before Hydra runs them: an override that Hydra's lexer cannot
read (a path with a quote or a non-ASCII letter) gets an error that shows the same
override quoted, instead of the lexer's bare message; a run folder that cannot be
written gets a clear error before Hydra fails to make it (:class:`RunDirCheck`)."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from hydra.experimental.callback import Callback

__all__ = ["quoted_override", "override_error", "check_overrides", "hydra_entry", "unwritable", "RunDirCheck"]


def _parse(override: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([override])[0]


def quoted_override(key: str, value: str) -> Optional[str]:
    """``key="value"`` in Hydra's quoting (inner double quotes escaped), when Hydra reads it
    back as ``value``; else None."""
    escaped = value.replace('"', '\\"')
    tail = len(escaped) - len(escaped.rstrip("\\"))
    escaped += "\\" * tail  # a trailing backslash would escape the closing quote
    candidate = f'{key}="{escaped}"'
    try:
        return candidate if _parse(candidate).value() == value else None
    except Exception:  # noqa: BLE001 - any parse failure: no suggestion
        return None


def override_error(override: str) -> Optional[str]:
    """The error message for an override Hydra cannot parse, with the quoted form to use;
    None when it parses."""
    from hydra.errors import OverrideParseException

    try:
        _parse(override)
        return None
    except OverrideParseException as e:
        why = str(e).splitlines()[0]
    key, sep, value = override.partition("=")
    fix = quoted_override(key, value) if sep else None
    if fix is None:
        return (f"Hydra cannot read the override {override!r} ({why}). Quote the value for Hydra, e.g. "
                f"'key=\"a value\"'; see https://hydra.cc/docs/advanced/override_grammar/basic")
    return (f"Hydra cannot read the override {override!r} ({why}): a value with a quote or a non-ASCII letter "
            f"must be quoted for Hydra, as {fix} ; on a shell command line with the shell's quotes around it: "
            f"{shlex.quote(fix)} . From Python, lasr.fit(video=..., masks=...) takes any path.")


def check_overrides(argv: list[str]) -> None:
    """Exit with status 2 and :func:`override_error` on the first override of ``argv`` (a
    command line for a Hydra app) that Hydra cannot parse."""
    from hydra._internal.utils import get_args_parser  # the parser Hydra itself uses

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args, rest = get_args_parser().parse_known_args(argv)
    except SystemExit:  # a bad flag: Hydra reports it itself
        return
    for override in list(args.overrides or []) + [a for a in rest if not a.startswith("-")]:
        message = override_error(override)
        if message:
            print(f"error: {message}", file=sys.stderr, flush=True)
            raise SystemExit(2)


def hydra_entry(app: Callable[[], None]) -> Callable[[], None]:
    """A command's entry point: :func:`check_overrides` on ``sys.argv``, then the Hydra app."""

    def main() -> None:
        check_overrides(sys.argv[1:])
        app()

    main.__doc__ = app.__doc__
    return main


def unwritable(folder: Path) -> Optional[str]:
    """Why ``folder`` (made when missing) cannot be written, or None: its nearest existing
    ancestor must be a folder this process may write."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} cannot be written (read-only file system or no permission)"
    return None


class RunDirCheck(Callback):
    """A Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): exit with status 2
    and a clear error when the run (or sweep) folder cannot be written, before Hydra
    tries to make it."""

    def _check(self, config: Any, key: str) -> None:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        HydraConfig.instance().set_config(config)  # what ${hydra:...} in the folder's name reads
        folder = OmegaConf.select(config, key)
        why = unwritable(Path(str(folder))) if folder else None
        if why:
            print(f"error: cannot write the run folder {folder}: {why}. Give a writable folder with "
                  f"{key}=... (or run from a writable folder)", file=sys.stderr, flush=True)
            raise SystemExit(2)

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")
