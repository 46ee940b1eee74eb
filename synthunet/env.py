"""The environment variables synthUNet reads, in one place (documentation/for_nnunet_users.md lists them).

Knobs use one prefix, ``SYNTHUNET_``. The three folder variables keep nnU-Net's spelling with synthUNet's
name (``synthUNet_raw``, ``synthUNet_preprocessed``, ``synthUNet_results``, as ``nnUNet_raw`` ...); see
:mod:`synthunet.paths`. Knobs renamed to the one prefix are still read under their old name, with a
:class:`FutureWarning` (shown by default, unlike ``DeprecationWarning``) that names the new one; when both
are set the new name wins.
"""
from __future__ import annotations

import os
import warnings

NUM_THREADS = "SYNTHUNET_NUM_THREADS"  #: torch threads of CPU training (default: the cores the workers leave free)
NUM_WORKERS = "SYNTHUNET_NUM_WORKERS"  #: training data worker processes (0: in the training process)
VGG19_WEIGHTS = "SYNTHUNET_VGG19_WEIGHTS"  #: local VGG-19 state dict of the perceptual losses
MAX_IMAGE_VOXELS = "SYNTHUNET_MAX_IMAGE_VOXELS"  #: the largest image read_image reads
DEBUG = "SYNTHUNET_DEBUG"  #: non-empty: user-facing errors keep their traceback

#: new name -> the old names still read (with a FutureWarning)
DEPRECATED_NAMES: dict[str, tuple[str, ...]] = {
    NUM_THREADS: ("SYNTH_NUM_THREADS",),
    NUM_WORKERS: ("SYNTH_NUM_WORKERS",),
}


def get(name: str, default: str | None = None) -> str | None:
    """The value of environment variable ``name`` (empty counts as unset), else of an old name of it (with a
    FutureWarning naming ``name``), else ``default``. When ``name`` and an old name are both set, ``name`` wins
    and the warning says the old one is ignored."""
    value = os.environ.get(name) or None
    for old in DEPRECATED_NAMES.get(name, ()):
        old_value = os.environ.get(old) or None
        if old_value is None:
            continue
        if value is None:
            warnings.warn(f"the environment variable {old} is deprecated; set {name}={old_value} instead "
                          f"(read {old} this time)", FutureWarning, stacklevel=2)
            value = old_value
        else:
            warnings.warn(f"the environment variable {old} is deprecated and ignored because {name} is set "
                          f"({name}={value}); unset {old}", FutureWarning, stacklevel=2)
    return default if value is None else value
