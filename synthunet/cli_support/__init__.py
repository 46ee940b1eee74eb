"""Shared command-line plumbing: turn user-facing errors into a clear message and an exit code.

Every ``synth_*`` command runs its body through :func:`run_cli`. Project errors
(:class:`synthunet.errors.SynthUNetError`) and operating-system errors (``OSError``: a file that cannot be
opened, a folder that cannot be written, a full disk) are printed as ``error: <message>`` and
``hint: <what to do>`` and give exit code 2. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno
import sys
from typing import Callable

from synthunet import env
from synthunet.errors import SynthUNetError

USER_ERRORS: tuple[type[BaseException], ...] = (SynthUNetError, OSError)
DEFAULT_HINT = "documentation/errors.md lists what each command checks; SYNTHUNET_DEBUG=1 shows the traceback"
OS_ERROR_HINTS = {
    errno.EACCES: "check the permissions of that path, or choose a folder you can write to",
    errno.EPERM: "check the permissions of that path, or choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.ENOSPC: "the disk is full; free some space or choose another output folder",
    errno.ENOENT: "check the path (a typo, or a folder that was moved?)",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "that name is taken by a folder; choose another name or remove the folder",
    errno.EEXIST: "that name is taken; choose another name or remove the existing file or folder",
}


def describe_error(error: BaseException) -> tuple[str, str]:
    """(message, hint) of a user-facing error as :func:`run_cli` prints them."""
    if isinstance(error, SynthUNetError):
        return str(error), error.hint or DEFAULT_HINT
    assert isinstance(error, OSError)
    if error.strerror and error.filename is not None:  # "[Errno 13] Permission denied: 'x'" -> "x: Permission denied"
        target = f" -> {error.filename2}" if error.filename2 is not None else ""
        message = f"{error.filename}{target}: {error.strerror}"
    else:
        message = str(error)
    return message, OS_ERROR_HINTS.get(error.errno, DEFAULT_HINT)


def run_cli(action: Callable[[], int | None]) -> int:
    """Run a command body; print user-facing errors as ``error: ...`` / ``hint: ...`` and return 2.

    User-facing errors are :class:`~synthunet.errors.SynthUNetError` and ``OSError``; any other exception is
    a bug and propagates with its traceback. Set ``SYNTHUNET_DEBUG=1`` to get the traceback of user-facing
    errors too.
    """
    try:
        result = action()
    except USER_ERRORS as error:
        if env.get(env.DEBUG):
            raise
        message, hint = describe_error(error)
        print(f"error: {message}", file=sys.stderr)
        print(f"hint: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
