"""Where synthUNet keeps raw data, preprocessed data and results.

The three folders are named by environment variables, as in nnU-Net. There is no
silent default: a missing variable raises an error that says what to export.
"""
from __future__ import annotations

from pathlib import Path

from synthunet import env
from synthunet.errors import SynthUNetError

RAW_ENV = "synthUNet_raw"
PREPROCESSED_ENV = "synthUNet_preprocessed"
RESULTS_ENV = "synthUNet_results"

_EXAMPLES = {
    RAW_ENV: "/data/synthUNet_raw",
    PREPROCESSED_ENV: "/data/synthUNet_preprocessed",
    RESULTS_ENV: "/data/synthUNet_results",
}


class PathNotConfiguredError(SynthUNetError, RuntimeError):
    """An environment variable naming a synthUNet folder is not set."""

    hint = "set synthUNet_raw, synthUNet_preprocessed and synthUNet_results (documentation/setting_up_paths.md)"


def _folder_from_env(variable: str) -> Path:
    value = env.get(variable)
    if not value:
        lines = [f"The environment variable {variable} is not set, so synthUNet does not know where its data lives.",
                 "Set all three folders, for example:"]
        lines += [f"    export {name}={example}" for name, example in _EXAMPLES.items()]
        lines.append("See documentation/setting_up_paths.md.")
        raise PathNotConfiguredError("\n".join(lines))
    return Path(value).expanduser().resolve()


def raw_folder() -> Path:
    """Folder holding the raw datasets (``$synthUNet_raw``)."""
    return _folder_from_env(RAW_ENV)


def preprocessed_folder() -> Path:
    """Folder holding fingerprints, plans and preprocessed data (``$synthUNet_preprocessed``)."""
    return _folder_from_env(PREPROCESSED_ENV)


def results_folder() -> Path:
    """Folder holding trained models (``$synthUNet_results``)."""
    return _folder_from_env(RESULTS_ENV)
