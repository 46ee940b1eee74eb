"""Project errors: problems a user can fix, reported by every command as one clear message.

Raise a :class:`SynthUNetError` (or one of its subclasses) for anything the user caused or can repair:
a missing or unreadable file, a wrong option, a dataset that breaks the format. ``run_cli``
(:mod:`synthunet.cli_support`) prints such errors as ``error: <message>`` (plus ``hint: <hint>`` when the
error carries one) and exits with code 2. Any other exception (``KeyError``, ``ValueError``, ``TypeError``,
...) is a bug in synthUNet and keeps its traceback.

Most project errors also derive from a built-in class (``ValueError``, ``FileNotFoundError``, ...) so that
code catching the built-in class keeps working.

This module imports nothing from synthUNet, so every module can use it.
"""
from __future__ import annotations

from typing import NoReturn


class SynthUNetError(Exception):
    """A user-facing problem: the message says what is wrong and names the file, case or option.

    ``hint`` (optional, one sentence) says what to do about it; ``run_cli`` prints it under the message.
    Subclasses can set a class-level ``hint``; ``hint=...`` in the constructor overrides it.
    """

    hint: str | None = None

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:  # KeyError-derived project errors would otherwise quote their message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InputError(SynthUNetError, ValueError):
    """An option, file or folder given to a command that it cannot use (the message says which and why)."""


class CaseError(SynthUNetError, ValueError):
    """One case of a dataset or input folder cannot be processed; the message names the case and the cause."""


def raise_for_case(case_id: str, error: BaseException, what: str = "") -> NoReturn:
    """Re-raise ``error``, which happened while processing case ``case_id``, so that the case is named.

    A project error or an OS error (a file that cannot be read, a full disk) becomes a :class:`CaseError`
    whose message starts with the case (the original's hint is kept). Anything else is a bug: it is
    re-raised unchanged, with a note naming the case, so that it keeps its type and traceback. Call it in
    an ``except`` block.
    """
    where = f"case {case_id}{f' ({what})' if what else ''}"
    if isinstance(error, (SynthUNetError, OSError)):
        message = str(error)
        for prefix in (f"Case {case_id}:", f"case {case_id}:"):  # do not name the case twice
            if message.startswith(prefix):
                message = message[len(prefix):].strip()
        raise CaseError(f"{where[0].upper()}{where[1:]}: {message}", hint=getattr(error, "hint", None)) from error
    if hasattr(error, "add_note"):  # Python >= 3.11
        error.add_note(f"(while processing {where})")
    raise error
