"""Errors a user can fix, and how a command reports them.

A bad params value, a missing or undecodable input file, a source that failed, a busy lock:
each is raised as a :class:`UserError` (or a subclass) whose message names the key, file or
source and says what to do. A command's entry point (:func:`run_command`: the stages, the
flows, ``sdl``) prints such an error in a line or two and exits non-zero, without a traceback;
``--verbose`` or ``SDL_VERBOSE=1`` shows the traceback too. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable, Sequence

# OS errors that are about the user's files or machine, not about this code
_USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                errno.EDQUOT}


class UserError(Exception):
    """Something the user can fix; the message names it and says what to do. ``exit_status``:
    what a command exits with (2; 3 for invalid params, where trying again cannot help)."""

    exit_status = 2


class InputError(UserError, ValueError):
    """A file or dataset given to the pipeline is malformed or does not fit the params; the
    message names it."""


def is_user_error(error: BaseException) -> bool:
    """A :class:`UserError`, or an OS error about the user's files or disk (missing, not
    readable, disk full)."""
    if isinstance(error, UserError):
        return True
    return isinstance(error, OSError) and error.errno in _USER_ERRNOS


def describe(error: BaseException) -> str:
    """The error in a line or two: its message; for an OS error, the file and the reason."""
    if isinstance(error, OSError) and not isinstance(error, UserError) and error.errno in _USER_ERRNOS:
        where = error.filename or ""
        reason = error.strerror or str(error)
        hint = {
            errno.ENOENT: "check the path (or run the stages before this one: dvc repro)",
            errno.ENOSPC: "free disk space and run again (nothing half-written was kept)",
        }.get(error.errno or 0, "check the file's permissions")
        return f"{where}: {reason}; {hint}" if where else f"{reason}; {hint}"
    text = str(error).strip() or type(error).__name__
    lines = text.splitlines()
    return "\n".join(lines[:2]) + (f" ... ({len(lines) - 2} more lines with --verbose)" if len(lines) > 2 else "")


def verbose(argv: Sequence[str] | None = None) -> bool:
    """Whether tracebacks were asked for: ``--verbose`` on the command line or ``SDL_VERBOSE``."""
    arguments = sys.argv[1:] if argv is None else argv
    return "--verbose" in arguments or os.environ.get("SDL_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


def run_command(main: Callable[[], int], prog: str, argv: Sequence[str] | None = None) -> int:
    """Run ``main`` as a command: a user error is printed as ``<prog>: error: <message>`` and
    gives its ``exit_status`` (2, or 3 for invalid params; 1 stays "finished, but something
    failed", e.g. a failed validation report)."""
    try:
        return int(main() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BaseException as error:
        if isinstance(error, SystemExit) or not is_user_error(error):
            raise
        if verbose(argv):
            traceback.print_exc()
        print(f"{prog}: error: {describe(error)}", file=sys.stderr)
        return int(getattr(error, "exit_status", 2))
