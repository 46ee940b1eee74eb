"""nnU-Net v2 flag spellings on the ``synth_*`` commands (documentation/for_nnunet_users.md).

The aliases themselves are declared with the long form (``parser.add_argument("--device", "-device", ...)``), so
they fill the same namespace attribute. Declaring nnU-Net's single-dash multi-letter spellings explicitly also
stops argparse from reading ``-device cuda`` as ``-d evice`` plus a stray ``cuda``. This module adds the two
other kinds of nnU-Net flags:

- **accepted**: synthUNet already does what the flag asks for (``--npz``: validation predictions are always
  written). The flag parses and changes nothing; the namespace is the same as without it.
- **refused**: nnU-Net's flag asks for something synthUNet does not have. The flag is declared (hidden from
  ``--help``) only so that the user gets the reason instead of a mis-parse (``-pretrained_weights w.pth`` would
  otherwise be read as ``-p retrained_weights``).
"""
from __future__ import annotations

import argparse

DOCUMENT = "documentation/for_nnunet_users.md"


class _Accepted(argparse.Action):
    """An nnU-Net flag that synthUNet's default behaviour already satisfies: parsed, then ignored."""

    def __init__(self, option_strings, dest, reason: str = "", **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, default=argparse.SUPPRESS,
                         help=f"accepted for nnU-Net users and ignored: {reason}")

    def __call__(self, parser, namespace, values, option_string=None):
        pass


class _Refused(argparse.Action):
    """An nnU-Net flag without a synthUNet counterpart: using it stops with the reason."""

    def __init__(self, option_strings, dest, reason: str = "", **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs="*", default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS)
        self.reason = reason

    def __call__(self, parser, namespace, values, option_string=None):
        raise argparse.ArgumentError(self, f"an nnU-Net option that {parser.prog} does not have: {self.reason} "
                                           f"(see {DOCUMENT})")


def accept_nnunet_flags(parser: argparse.ArgumentParser, flags: dict[str, str]) -> None:
    """Add nnU-Net flags (without a value) that change nothing here; ``flags``: flag -> why (shown in --help)."""
    for flag, reason in flags.items():
        parser.add_argument(flag, action=_Accepted, reason=reason)


def refuse_nnunet_flags(parser: argparse.ArgumentParser, flags: dict[str, str]) -> None:
    """Add hidden nnU-Net flags that stop with ``flags[flag]`` (why synthUNet has no such option)."""
    for flag, reason in flags.items():
        parser.add_argument(flag, action=_Refused, reason=reason)
