"""Model zips: writing one (``synth_export_model_to_zip``) and checking and installing one
(``synth_install_pretrained_model_from_zip``).

Layout of the zip (documentation/predict.md, "Sharing a trained model")::

    synthunet_model_manifest.json
    DatasetXXX_Name/{Trainer}__{Plans}__{configuration}__{TARGET}/plans.json
                                                                  dataset.json
                                                                  model_info.json
                                                                  dataset_fingerprint.json  (if present)
                                                                  fold_X/{checkpoint}  (chosen folds, checkpoints)

The manifest names the dataset, the model folder, the folds and checkpoints and, per member, its size and
sha256. Installing refuses an archive, before anything is written, for: an absolute member path, a ``..``
(or empty, or ``.``) component, a backslash, a symlink or other special member, an encrypted member, a
member the manifest does not list (or a listed one the archive lacks), duplicate names, a size that differs
from the manifest, and a total size above a limit (zip bombs). It then extracts into a temporary folder next to
the destination, checks every checksum and that the folder is a usable model, and renames it into place; on
any failure the temporary folder (and any folder the install created) is removed.

The manifest guards against damage and careless or hostile archive *structure*; it is not a signature (whoever
wrote the zip wrote the checksums). Checkpoints are loaded with ``weights_only=True`` anyway, so no code from a
model zip ever runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

from synthunet import __version__, paths
from synthunet.dataset.identifiers import DATASET_NAME_PATTERN, results_dataset_folder
from synthunet.errors import InputError
from synthunet.prediction.model_folder import (DEFAULT_CHECKPOINT, DEFAULT_CONFIGURATION, DEFAULT_PLANS,
                                               DEFAULT_TRAINER, ModelFolder, ModelFolderError, find_model_folders,
                                               model_folder_name, parse_fold)
from synthunet.utilities.atomic_io import atomic_path

MANIFEST_NAME = "synthunet_model_manifest.json"
FORMAT = "synthUNet model archive"
FORMAT_VERSION = 1
#: files of a model folder that prediction needs (documentation/model_folder_format.md)
MODEL_FILES = ("plans.json", "dataset.json", "model_info.json")
#: copied when present (part of the model folder contract, small)
OPTIONAL_FILES = ("dataset_fingerprint.json",)
#: refuse archives whose members add up to more than this (uncompressed); a 5-fold model is a few GB at most
DEFAULT_MAX_TOTAL_BYTES = 32 * 1024 ** 3
MAX_MANIFEST_BYTES = 4 * 1024 ** 2
_CHUNK = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelArchiveError(InputError):
    """A model zip that cannot be exported or installed; the message names the archive and the member."""

    hint = ("nothing was installed; export the model again with synth_export_model_to_zip or ask for a new copy "
            "(documentation/predict.md, 'Sharing a trained model')")


# ---- helpers ------------------------------------------------------------------------------------------------
def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_any_model_folder(path: Path | str) -> ModelFolder:
    """A synthesis model folder, or a segmenter's (``"task": "segmentation"`` in model_info.json)."""
    path = Path(path)
    try:
        task = json.loads((path / "model_info.json").read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        task = None  # ModelFolder.load says what is wrong
    if task == "segmentation":
        from synthunet.inference.segmentation import SegmentationModelFolder

        return SegmentationModelFolder.load(path)
    return ModelFolder.load(path)


def _check_checkpoint_names(checkpoints: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(str(c) for c in checkpoints)) or [DEFAULT_CHECKPOINT]
    bad = [c for c in names if not _SAFE_NAME.match(c)]
    if bad:
        raise InputError(f"A checkpoint is a file name in fold_X/ (e.g. {DEFAULT_CHECKPOINT}), got {bad[0]!r}")
    return names


# ---- export -------------------------------------------------------------------------------------------------
def export_model_folder_to_zip(model_folder: Path | str, output: Path | str,
                               folds: Sequence[int | str] | None = None,
                               checkpoints: Sequence[str] = (DEFAULT_CHECKPOINT,)) -> Path:
    """Write ``output`` (a zip): the model folder's plans, dataset, model info (and fingerprint), the
    ``checkpoints`` of ``folds`` (default: every fold that has the first checkpoint), and the manifest.

    The model folder must lie in a ``DatasetXXX_Name`` folder (its name is recorded, so that installing puts
    it back at the same place). The zip is written under a temporary name and renamed.
    """
    folder = Path(model_folder)
    model = load_any_model_folder(folder)
    checkpoints = _check_checkpoint_names(checkpoints)
    chosen = model.resolve_folds(folds, checkpoints[0])
    for checkpoint in checkpoints[1:]:
        model.resolve_folds(chosen, checkpoint)
    dataset = folder.resolve().parent.name
    if not DATASET_NAME_PATTERN.match(dataset):
        raise InputError(f"{folder} does not lie in a dataset folder (…/DatasetXXX_Name/{folder.name}); a model zip "
                         f"records the dataset so that installing puts the model back under $synthUNet_results")
    relative = [*MODEL_FILES, *[name for name in OPTIONAL_FILES if (folder / name).is_file()],
                *[f"fold_{fold}/{checkpoint}" for fold in chosen for checkpoint in checkpoints]]
    prefix = f"{dataset}/{folder.name}/"
    output = Path(output)
    if output.is_dir():
        raise InputError(f"-o {output} is a folder; give the zip file to write, e.g. {output / (folder.name + '.zip')}")
    output.parent.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}
    with atomic_path(output) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name in relative:  # hashed while written: the manifest describes exactly the bytes in the zip
                info = zipfile.ZipInfo.from_file(folder / name, prefix + name)
                info.compress_type = zipfile.ZIP_DEFLATED
                digest, size = hashlib.sha256(), 0
                with open(folder / name, "rb") as source, archive.open(info, "w") as target:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        target.write(chunk)
                files[prefix + name] = {"size": size, "sha256": digest.hexdigest()}
            manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "synthunet_version": __version__,
                        "dataset": dataset, "model_folder": folder.name, "target": model.target,
                        "configuration": model.configuration, "folds": chosen, "checkpoints": checkpoints,
                        "files": files}
            archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
    return output


def export_model_to_zip(dataset: str | int, target: str, output: Path | str,
                        configuration: str = DEFAULT_CONFIGURATION, trainer: str = DEFAULT_TRAINER,
                        plans: str = DEFAULT_PLANS, folds: Sequence[int | str] | None = None,
                        checkpoints: Sequence[str] = (DEFAULT_CHECKPOINT,)) -> Path:
    """``$synthUNet_results/DatasetXXX_Name/{trainer}__{plans}__{configuration}__{target}`` -> ``output``."""
    dataset_folder = results_dataset_folder(dataset)
    found = find_model_folders(dataset_folder, trainer, plans, configuration)
    matches = [path for name, path in found.items() if name.lower() == target.lower()]
    if not matches:
        present = sorted(p.name for p in dataset_folder.iterdir() if p.is_dir()) if dataset_folder.is_dir() else []
        raise ModelFolderError(f"No model folder {model_folder_name(trainer, plans, configuration, target)} in "
                               f"{dataset_folder} (it holds: {', '.join(present) or 'nothing'}); check -t/-c/-tr/-p")
    return export_model_folder_to_zip(matches[0], output, folds, checkpoints)


# ---- checking an archive ------------------------------------------------------------------------------------
def _member_parts(name: str, where: str) -> list[str]:
    """The path components of a member name; raise unless it is a plain relative path."""
    if not name:
        raise ModelArchiveError(f"{where}: a member has an empty name")
    if "\\" in name or "\x00" in name:
        raise ModelArchiveError(f"{where}: member {name!r} has a backslash or NUL in its name (a model zip uses '/')")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ModelArchiveError(f"{where}: member {name!r} has an absolute path; a model zip holds relative paths only")
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if ".." in parts:
        raise ModelArchiveError(f"{where}: member {name!r} has a '..' component, which would write outside the "
                                f"install folder")
    if any(part in ("", ".") for part in parts):
        raise ModelArchiveError(f"{where}: member {name!r} has an empty or '.' path component")
    return parts


def _check_member_kind(info: zipfile.ZipInfo, where: str) -> None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ModelArchiveError(f"{where}: member {info.filename!r} is a symbolic link; a model zip holds plain "
                                f"files only")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ModelArchiveError(f"{where}: member {info.filename!r} is not a plain file (mode {oct(mode)})")
    if info.flag_bits & 0x1:
        raise ModelArchiveError(f"{where}: member {info.filename!r} is encrypted")
    if info.is_dir() and info.file_size:
        raise ModelArchiveError(f"{where}: member {info.filename!r} is a folder entry with data")


def _parse_manifest(data: bytes, where: str) -> dict:
    def refuse_duplicates(pairs: list) -> dict:
        seen: set = set()
        for key, _ in pairs:
            if key in seen:
                raise ModelArchiveError(f"{where}: {MANIFEST_NAME} lists {key!r} twice")
            seen.add(key)
        return dict(pairs)

    try:
        manifest = json.loads(data.decode("utf-8"), object_pairs_hook=refuse_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelArchiveError(f"{where}: {MANIFEST_NAME} is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelArchiveError(f"{where}: {MANIFEST_NAME} is not a synthUNet model manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelArchiveError(f"{where}: {MANIFEST_NAME} has format version {version!r}; this synthUNet reads "
                                f"version {FORMAT_VERSION} (a newer synthUNet wrote it?)")
    dataset, model = manifest.get("dataset"), manifest.get("model_folder")
    if not isinstance(dataset, str) or not DATASET_NAME_PATTERN.match(dataset):
        raise ModelArchiveError(f"{where}: the manifest's dataset {dataset!r} is not a DatasetXXX_Name folder name")
    if not isinstance(model, str) or not _SAFE_NAME.match(model) or "__" not in model:
        raise ModelArchiveError(f"{where}: the manifest's model_folder {model!r} is not a "
                                f"Trainer__Plans__configuration__TARGET folder name")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelArchiveError(f"{where}: the manifest lists no files")
    for name, entry in files.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("size"), int) and entry["size"] >= 0
                and isinstance(entry.get("sha256"), str) and _SHA256.match(entry["sha256"])):
            raise ModelArchiveError(f"{where}: the manifest entry of {name!r} needs a size (bytes) and a sha256 "
                                    f"(64 lower-case hex digits)")
    try:
        manifest["folds"] = [parse_fold(f) for f in manifest.get("folds") or []]
        manifest["checkpoints"] = _check_checkpoint_names(manifest.get("checkpoints") or [])
    except (InputError, TypeError) as error:
        raise ModelArchiveError(f"{where}: the manifest's folds or checkpoints are not valid ({error})") from None
    if not manifest["folds"]:
        raise ModelArchiveError(f"{where}: the manifest names no folds")
    return manifest


def _check_archive(archive: zipfile.ZipFile, where: str, max_total_bytes: int) -> tuple[dict, list[zipfile.ZipInfo]]:
    """Check the member list and the manifest (nothing is extracted): the manifest and the file members."""
    infos = archive.infolist()
    seen: dict[str, str] = {}
    for info in infos:
        _member_parts(info.filename, where)
        _check_member_kind(info, where)
        key = info.filename.casefold()
        if key in seen:
            same = seen[key] == info.filename
            raise ModelArchiveError(f"{where}: member {info.filename!r} occurs twice" if same else
                                    f"{where}: members {seen[key]!r} and {info.filename!r} differ only in case")
        seen[key] = info.filename
    manifest_info = next((i for i in infos if i.filename == MANIFEST_NAME), None)
    if manifest_info is None:
        raise ModelArchiveError(f"{where} has no {MANIFEST_NAME}; it was not written by synth_export_model_to_zip")
    if manifest_info.file_size > MAX_MANIFEST_BYTES:
        raise ModelArchiveError(f"{where}: {MANIFEST_NAME} is {manifest_info.file_size} bytes, implausibly large")
    try:
        manifest = _parse_manifest(archive.read(manifest_info), where)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ModelArchiveError(f"{where}: member {MANIFEST_NAME} is damaged ({error})") from None
    files = manifest["files"]
    prefix = f"{manifest['dataset']}/{manifest['model_folder']}/"
    for name in files:
        parts = _member_parts(name, f"{where} ({MANIFEST_NAME})")
        if not name.startswith(prefix) or len(parts) < 3 or name.endswith("/"):
            raise ModelArchiveError(f"{where}: the manifest lists {name!r}, which is not a file inside {prefix}")
    members = [i for i in infos if i is not manifest_info and not i.is_dir()]
    for info in infos:
        if info.is_dir() and not any(name.startswith(info.filename) for name in files):
            raise ModelArchiveError(f"{where}: member {info.filename!r} is not in the manifest")
    for info in members:
        if info.filename not in files:
            raise ModelArchiveError(f"{where}: member {info.filename!r} is not in the manifest")
        if info.file_size != files[info.filename]["size"]:
            raise ModelArchiveError(f"{where}: member {info.filename!r} is {info.file_size} bytes, but the manifest "
                                    f"says {files[info.filename]['size']}")
    missing = sorted(set(files) - {info.filename for info in members})
    if missing:
        raise ModelArchiveError(f"{where}: the manifest lists {missing[0]!r}, which the archive lacks"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    total = sum(info.file_size for info in members)
    if total > max_total_bytes:
        raise ModelArchiveError(f"{where}: its members add up to {total / 1024 ** 3:.1f} GiB uncompressed, more than "
                                f"the {max_total_bytes / 1024 ** 3:.1f} GiB a model plausibly needs (a zip bomb?); "
                                f"raise the limit with --max_size_gb if the model really is that large")
    return manifest, members


def read_manifest(zip_file: Path | str, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> dict:
    """The manifest of a model zip, after checking its member list (nothing is extracted or written)."""
    with _open_zip(zip_file) as archive:
        return _check_archive(archive, str(zip_file), max_total_bytes)[0]


def _open_zip(zip_file: Path | str) -> zipfile.ZipFile:
    path = Path(zip_file)
    if not path.is_file():
        raise InputError(f"Model zip {path} does not exist")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as error:
        raise ModelArchiveError(f"{path} is not a readable zip archive ({error})") from None


# ---- install ------------------------------------------------------------------------------------------------
def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, entry: dict, folder: Path, where: str) -> None:
    """Write one member (path relative to the model folder) into ``folder`` and check its size and sha256."""
    relative = info.filename.split("/")[2:]
    target = folder.joinpath(*relative)
    if not target.resolve().is_relative_to(folder.resolve()):  # cannot happen after _member_parts; kept as a guard
        raise ModelArchiveError(f"{where}: member {info.filename!r} would be written outside the install folder")
    digest, size = hashlib.sha256(), 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, open(target, "xb") as sink:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > entry["size"]:
                    raise ModelArchiveError(f"{where}: member {info.filename!r} holds more than the {entry['size']} "
                                            f"bytes the manifest states")
                digest.update(chunk)
                sink.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ModelArchiveError(f"{where}: member {info.filename!r} is damaged ({error})") from None
    if size != entry["size"]:
        raise ModelArchiveError(f"{where}: member {info.filename!r} holds {size} bytes, but the manifest says "
                                f"{entry['size']}")
    if digest.hexdigest() != entry["sha256"]:
        raise ModelArchiveError(f"{where}: member {info.filename!r} does not match its sha256 in the manifest "
                                f"({digest.hexdigest()[:12]}… instead of {entry['sha256'][:12]}…); the archive is "
                                f"damaged or was altered")


def _verify_model(folder: Path, destination: Path, manifest: dict, where: str) -> None:
    """The extracted folder is a usable model with the manifest's folds and checkpoints, named as its model_info."""
    try:
        model = load_any_model_folder(folder)
        for checkpoint in manifest["checkpoints"]:
            model.resolve_folds(manifest["folds"], checkpoint)
    except ModelFolderError as error:
        message = str(error).replace(str(folder), str(destination))
        raise ModelArchiveError(f"{where}: the model folder in the archive is not usable: {message}") from None
    info = model.model_info
    if info.get("trainer") and info.get("plans_name"):
        expected = model_folder_name(info["trainer"], info["plans_name"], model.configuration, model.target)
        if expected != manifest["model_folder"]:
            raise ModelArchiveError(f"{where}: the manifest installs the model as {manifest['model_folder']}, but its "
                                    f"model_info.json describes {expected}")


def _make_folders(folder: Path) -> list[Path]:
    """``mkdir -p folder``; return the folders it created, deepest first."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir()
    return missing


def install_model_from_zip(zip_file: Path | str, results_folder: Path | str | None = None, overwrite: bool = False,
                           max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> Path:
    """Check a model zip and install it as ``{results}/DatasetXXX_Name/{model folder}``; return that folder.

    ``results_folder`` defaults to ``$synthUNet_results``. An existing model folder of that name is an error
    unless ``overwrite`` (it is then replaced in one rename; the old one is removed afterwards). Nothing is left
    behind when the archive is refused or the install fails.
    """
    where = str(zip_file)
    results = Path(results_folder) if results_folder is not None else paths.results_folder()
    with _open_zip(zip_file) as archive:
        manifest, members = _check_archive(archive, where, max_total_bytes)
        dataset_folder = results / manifest["dataset"]
        destination = dataset_folder / manifest["model_folder"]
        if (destination.exists() or destination.is_symlink()) and not overwrite:
            raise InputError(f"{destination} already exists; remove it or pass --overwrite to replace it",
                             hint="nothing was installed")
        existing = next(p for p in (dataset_folder, *dataset_folder.parents) if p.exists())
        needed = sum(info.file_size for info in members)
        free = shutil.disk_usage(existing).free
        if needed > free:
            raise InputError(f"Installing {where} needs {needed / 1024 ** 2:.0f} MiB, but {existing} has only "
                             f"{free / 1024 ** 2:.0f} MiB free", hint="nothing was installed; free some space")
        created: list[Path] = []
        temporary = dataset_folder / f".tmp_{uuid.uuid4().hex[:8]}_{manifest['model_folder']}"
        previous = dataset_folder / f".tmp_{uuid.uuid4().hex[:8]}_old_{manifest['model_folder']}"
        done = False
        try:
            created = _make_folders(dataset_folder)
            temporary.mkdir()
            for info in members:
                _extract_member(archive, info, manifest["files"][info.filename], temporary, where)
            _verify_model(temporary, destination, manifest, where)
            if destination.exists() or destination.is_symlink():
                os.rename(destination, previous)
            try:
                os.rename(temporary, destination)
            except BaseException:
                if previous.exists():
                    os.rename(previous, destination)
                raise
            done = True
        finally:
            if not done:
                shutil.rmtree(temporary, ignore_errors=True)
                for folder in created:  # deepest first; only if still empty
                    try:
                        folder.rmdir()
                    except OSError:
                        pass
        if previous.is_symlink() or previous.is_file():
            previous.unlink()
        elif previous.exists():
            shutil.rmtree(previous)
    return destination
