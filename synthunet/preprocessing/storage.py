"""Storing preprocessed arrays so that a patch can be read without loading the whole volume.

Two formats are supported for reading; :data:`DEFAULT_FORMAT` is the one written (see
documentation/preprocessing.md for the measurement behind the choice):

- ``"npy"``: plain ``.npy`` files, opened with ``np.load(mmap_mode="r")``; a patch read touches only
  the pages of the patch.
- ``"b2nd"``: blosc2 N-dimensional arrays (LZ4), chunk = one channel's full volume, blocks of 8x32x32
  voxels; a patch read decompresses only the blocks it intersects.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from synthunet.utilities.atomic_io import atomic_path
from synthunet.errors import InputError

FORMATS = ("npy", "b2nd")
DEFAULT_FORMAT = "npy"
TEMPORARY_PREFIX = ".tmp_"


def array_path(stem: Path | str, file_format: str) -> Path:
    """``{stem}.npy`` or ``{stem}.b2nd``."""
    if file_format not in FORMATS:
        raise InputError(f"Unknown array format {file_format!r}; use one of {FORMATS}")
    return Path(f"{stem}.{file_format}")


BLOSC2_BLOCK = (8, 32, 32)  # (z, y, x) block; measured in documentation/preprocessing.md


def blosc2_chunks_and_blocks(shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk = one channel's full volume; blocks of :data:`BLOSC2_BLOCK` voxels (clipped to the shape)."""
    chunks = (1,) + tuple(int(s) for s in shape[1:])
    block = BLOSC2_BLOCK[-(len(shape) - 1):]
    blocks = (1,) + tuple(int(min(s, b)) for s, b in zip(shape[1:], block))
    return chunks, blocks


def save_array(array: np.ndarray, stem: Path | str, file_format: str = DEFAULT_FORMAT) -> Path:
    """Write ``array`` to ``{stem}.{file_format}`` atomically; return the final path."""
    import blosc2

    path = array_path(stem, file_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.ascontiguousarray(array)
    with atomic_path(path) as temporary:
        if file_format == "npy":
            with open(temporary, "wb") as handle:
                np.save(handle, array, allow_pickle=False)
        else:
            chunks, blocks = blosc2_chunks_and_blocks(array.shape)
            cparams = {"codec": blosc2.Codec.LZ4, "clevel": 5, "nthreads": 1}
            # the returned handle is dropped at once, which closes the file before it is renamed
            blosc2.asarray(array, urlpath=str(temporary), mode="w", chunks=chunks, blocks=blocks, cparams=cparams)
    return path


def find_array(stem: Path | str) -> Path | None:
    """The existing ``{stem}.npy`` or ``{stem}.b2nd`` file, or None."""
    for file_format in FORMATS:
        path = array_path(stem, file_format)
        if path.is_file():
            return path
    return None


def open_array(stem: Path | str, mmap: bool = True):
    """Open ``{stem}.npy|.b2nd`` for reading; slicing the result reads only the requested region.

    With ``mmap=False`` the whole array is loaded into memory as a NumPy array.
    """
    path = find_array(stem)
    if path is None:
        raise FileNotFoundError(f"Neither {stem}.npy nor {stem}.b2nd exists")
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    import blosc2

    array = blosc2.open(str(path), mode="r", mmap_mode="r" if mmap else None)
    return array if mmap else array[...]
