"""synth_make_example_dataset --protocol: families that differ as scanners do, on the same anatomy."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from synthunet.dataset.example import generate_case
from synthunet.dataset.example import generate as generate_module
from synthunet.dataset.example import mri_physics
from synthunet.dataset.example.mri_physics import NOMINAL_TISSUES, PROTOCOL_FAMILIES

FAST_SPACING = 4.0


def nominal_signals(family_name: str, channel: str, seed: int = 0) -> dict[str, float]:
    """Noise-free signal of each healthy tissue (nominal T1/T2/PD at the family's field) relative to WM."""
    family = PROTOCOL_FAMILIES[family_name]
    protocol = family.sample(np.random.default_rng(seed))
    out = {}
    for tissue in ("WM", "GM", "CSF"):
        nominal = NOMINAL_TISSUES[tissue]
        t1 = nominal["t1"] * (mri_physics.T1_FACTOR_1_5T[tissue] if family.field_strength_t == 1.5 else 1.0)
        out[tissue] = float(mri_physics.sequence_signal(channel, protocol, nominal["pd"], t1, nominal["t2"]))
    return {tissue: value / out["WM"] for tissue, value in out.items()}


@pytest.mark.parametrize("family", sorted(PROTOCOL_FAMILIES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_family_keeps_the_textbook_tissue_order(family, seed):
    t1 = nominal_signals(family, "T1N", seed)
    assert t1["WM"] > t1["GM"] > t1["CSF"], (family, t1)  # T1-weighted: white matter brightest, CSF darkest
    t2 = nominal_signals(family, "T2W", seed)
    assert t2["CSF"] > t2["GM"] > t2["WM"], (family, t2)
    flair = nominal_signals(family, "T2F", seed)
    assert flair["CSF"] < 0.2 * flair["WM"] < flair["GM"], (family, flair)  # CSF nulled, GM above WM


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mprage_has_the_strongest_grey_white_contrast_and_the_darkest_csf(seed):
    others = ("1.5T_se", "3T_gre_thick")
    contrast = {f: 1 - nominal_signals(f, "T1N", seed)["GM"] for f in ("3T_mprage", *others)}
    assert contrast["3T_mprage"] > 1.5 * max(contrast[f] for f in others), contrast
    csf = {f: nominal_signals(f, "T1N", seed)["CSF"] for f in ("3T_mprage", *others)}
    assert csf["3T_mprage"] < 0.5 * min(csf[f] for f in others), csf


def test_one_and_a_half_tesla_has_shorter_t1_from_the_same_draws():
    at_3t = mri_physics.sample_tissue_parameters(np.random.default_rng(4), 3.0)
    at_15t = mri_physics.sample_tissue_parameters(np.random.default_rng(4), 1.5)
    for tissue in ("WM", "GM"):
        assert at_15t[tissue].t1 == pytest.approx(0.75 * at_3t[tissue].t1)
        assert at_15t[tissue].t2 == at_3t[tissue].t2 and at_15t[tissue].pd == at_3t[tissue].pd
    assert at_15t["CSF"].t1 == at_3t["CSF"].t1
    with pytest.raises(ValueError, match="1.5 or 3.0"):
        mri_physics.sample_tissue_parameters(np.random.default_rng(4), 7.0)


#: sha256 (first 16 hex digits) of case 1, seed 3, 4 mm, computed with the generator before protocol families existed
DEFAULT_IMAGES_SHA256 = {"T1N": "3bfa47583382d59d", "T1C": "654536e62338a988", "T2W": "eb4fe7e63750a51a",
                         "T2F": "6c04b286852f57fa"}


def test_the_default_family_is_the_dataset_as_it_was():
    named = generate_case(1, seed=3, spacing=FAST_SPACING, protocol="default")
    assert {c: hashlib.sha256(v.tobytes()).hexdigest()[:16] for c, v in named.images.items()} == DEFAULT_IMAGES_SHA256
    # the default draws are the historical sample_protocol draws
    assert PROTOCOL_FAMILIES["default"].sample(np.random.default_rng(9)) == mri_physics.sample_protocol(
        np.random.default_rng(9))


@pytest.mark.parametrize("index", [0, 1])
def test_protocols_change_the_acquisition_not_the_anatomy(index):
    default = generate_case(index, seed=0, spacing=FAST_SPACING, anisotropic_fraction=0.0)
    mprage = generate_case(index, seed=0, spacing=FAST_SPACING, anisotropic_fraction=0.0, protocol="3T_mprage")
    assert np.array_equal(default.labels, mprage.labels) and default.geometry == mprage.geometry
    assert not np.array_equal(default.images["T1N"], mprage.images["T1N"])
    assert mprage.parameters["protocol_family"] == "3T_mprage" and mprage.parameters["protocol"]["t1_kind"] == "mprage"
    for channel, record in mprage.parameters["channels"].items():
        assert 40 <= record["snr_wm"] <= 70 and 0.12 <= record["bias_log_std"] <= 0.25, channel


@pytest.mark.parametrize("family,spacing,expected_z", [("1.5T_se", 1.0, 5.0), ("1.5T_se", 2.0, 6.0),
                                                        ("3T_gre_thick", 1.0, 3.0), ("3T_gre_thick", 2.0, 4.0),
                                                        ("3T_mprage", 2.0, 2.0)])
def test_slice_thickness_is_the_nearest_multiple_of_the_spacing(family, spacing, expected_z):
    thickness = PROTOCOL_FAMILIES[family].slice_thickness_mm
    factor = max(1, int(np.floor(thickness / spacing + 0.5)))
    assert factor * spacing == expected_z
    if spacing == 2.0:  # generating 1 mm cases takes too long for a unit test; the rule is the same
        case = generate_case(2, seed=0, spacing=spacing, anisotropic_fraction=1.0, protocol=family)
        assert case.geometry.spacing == (expected_z, spacing, spacing)  # z thick, whatever the dataset drew


def test_command_records_the_protocol_and_refuses_unknown_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("synthUNet_raw", str(tmp_path / "raw"))
    argv = ["-d", "503", "--num_cases", "1", "--spacing", str(FAST_SPACING), "-np", "1", "--no_progress",
            "--no_oracle"]
    assert generate_module.main(argv + ["--protocol", "1.5T_se"]) == 0
    content = json.loads((tmp_path / "raw" / "Dataset503_BraTSPhantom" / "dataset.json").read_text())
    assert content["generator"]["protocol"] == "1.5T_se"
    assert generate_module.main(["-d", "504"] + argv[2:]) == 0
    default = json.loads((tmp_path / "raw" / "Dataset504_BraTSPhantom" / "dataset.json").read_text())
    assert "protocol" not in default["generator"]  # the default dataset.json is as it was
    with pytest.raises(SystemExit):
        generate_module.main(argv + ["--protocol", "7T"])
    assert "invalid choice" in capsys.readouterr().err
