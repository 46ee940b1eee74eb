"""Tissue parameters at 3 T and the signal equations of the four BraTS sequences.

Units: times in ms, concentrations in mM, relaxivities in 1/(mM s). Every function works on scalars
and on NumPy arrays alike. Sources of the parameter values: documentation/example_dataset.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Nominal 3 T values: T1 (ms), T2 (ms), proton density (water content relative to CSF), and the
# per-case log-normal jitter (standard deviation of the log). "NET" is the non-enhancing tumour core
# of non-enhancing cases; it carries label 1 (NCR) like necrosis.
NOMINAL_TISSUES: dict[str, dict[str, float]] = {
    "GM": {"t1": 1450.0, "t2": 100.0, "pd": 0.80, "jitter": 0.06},
    "WM": {"t1": 900.0, "t2": 75.0, "pd": 0.69, "jitter": 0.06},
    "CSF": {"t1": 4200.0, "t2": 1800.0, "pd": 1.00, "jitter": 0.03},
    "NCR": {"t1": 2600.0, "t2": 300.0, "pd": 0.92, "jitter": 0.12},
    "NET": {"t1": 1800.0, "t2": 170.0, "pd": 0.86, "jitter": 0.10},
    "ED": {"t1": 1550.0, "t2": 170.0, "pd": 0.83, "jitter": 0.06},
    "ET": {"t1": 1700.0, "t2": 120.0, "pd": 0.84, "jitter": 0.10},
}
# Gadolinium concentration (mM) in the extravascular tissue water at the time of the T1C scan.
# ET is drawn per case; the small healthy/oedema values are the R1 changes reported for normal-
# appearing white matter and peritumoral oedema divided by r1 ~ 4/mM/s.
NOMINAL_GADOLINIUM_MM: dict[str, float] = {"GM": 0.015, "WM": 0.008, "CSF": 0.0, "NCR": 0.01, "NET": 0.01,
                                          "ED": 0.012}
ET_GADOLINIUM_RANGE_MM = (0.15, 0.5)
R1_RANGE = (3.5, 5.0)  # 1/(mM s) at 3 T (gadoterate ... gadobutrol)
R2_OVER_R1 = 1.2
NOMINAL_CSF_T1_FOR_TI = 4200.0  # what the scanner protocol assumes when it sets the FLAIR inversion time


#: T1 at 1.5 T relative to 3 T: white and grey matter relax about a quarter faster at the lower field (Rooney et
#: al., MRM 2007: WM 0.79 vs 1.08 s, GM 1.20 vs 1.61 s); CSF's T1 hardly depends on the field; tumour tissue and
#: oedema are taken in between. T2 changes little between 1.5 and 3 T and is kept.
T1_FACTOR_1_5T: dict[str, float] = {"GM": 0.75, "WM": 0.75, "CSF": 1.0, "NCR": 0.85, "NET": 0.8, "ED": 0.8, "ET": 0.8}


@dataclass(frozen=True)
class TissueParameters:
    """Relaxation times (ms) and proton density of one tissue in one case."""

    t1: float
    t2: float
    pd: float


@dataclass(frozen=True)
class Protocol:
    """Sequence parameters of one case (times in ms, flip angle in degrees)."""

    t1_kind: str  # "spgr" (spoiled gradient echo), "se" (spin echo) or "mprage", shared by T1N and T1C
    t1_tr: float
    t1_te: float
    t1_flip: float
    t2_tr: float
    t2_te: float
    flair_tr: float
    flair_te: float
    flair_ti: float
    r1: float  # gadolinium relaxivities, 1/(mM s)
    r2: float
    t1_ti: float = 0.0  # MPRAGE inversion time (0 for the other T1 kinds)

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def sample_tissue_parameters(rng: np.random.Generator, field_strength_t: float = 3.0) -> dict[str, TissueParameters]:
    """Per-case tissue parameters: nominal values times log-normal jitter (clipped at 2 standard deviations;
    PD jitter is a third of the relaxation-time jitter). At 1.5 T, T1 is scaled by :data:`T1_FACTOR_1_5T`
    (the same random draws as at 3 T)."""
    if field_strength_t not in (1.5, 3.0):
        raise ValueError(f"field strength must be 1.5 or 3.0 T, got {field_strength_t}")
    parameters = {}
    for name, nominal in NOMINAL_TISSUES.items():
        j = nominal["jitter"]
        z1, z2, z3 = np.clip(rng.normal(size=3), -2.0, 2.0)
        t1_nominal = nominal["t1"] * (T1_FACTOR_1_5T[name] if field_strength_t == 1.5 else 1.0)
        t1, t2 = t1_nominal * np.exp(j * z1), nominal["t2"] * np.exp(j * z2)
        pd = min(1.0, nominal["pd"] * np.exp(j / 3 * z3))
        parameters[name] = TissueParameters(t1=float(t1), t2=float(t2), pd=float(pd))
    return parameters


def flair_null_inversion_time(t1_csf: float, tr: float) -> float:
    """Inversion time that nulls a tissue of longitudinal relaxation ``t1_csf``: TI = T1 ln(2 / (1 + exp(-TR/T1)))."""
    return float(t1_csf * np.log(2.0 / (1.0 + np.exp(-tr / t1_csf))))


def sample_protocol(rng: np.random.Generator) -> Protocol:
    """Random but typical clinical 3 T parameters (multi-centre variety)."""
    if rng.random() < 0.65:
        kind, tr, te, flip = "spgr", rng.uniform(8.0, 25.0), rng.uniform(2.0, 5.0), rng.uniform(15.0, 30.0)
    else:
        kind, tr, te, flip = "se", rng.uniform(450.0, 700.0), rng.uniform(8.0, 15.0), 90.0
    flair_tr = rng.uniform(8000.0, 11000.0)
    flair_ti = flair_null_inversion_time(NOMINAL_CSF_T1_FOR_TI, flair_tr) * rng.uniform(0.99, 1.01)
    r1 = rng.uniform(*R1_RANGE)
    return Protocol(t1_kind=kind, t1_tr=tr, t1_te=te, t1_flip=flip, t2_tr=rng.uniform(3500.0, 6500.0),
                    t2_te=rng.uniform(80.0, 120.0), flair_tr=flair_tr, flair_te=rng.uniform(80.0, 140.0),
                    flair_ti=flair_ti, r1=r1, r2=r1 * R2_OVER_R1)


@dataclass(frozen=True)
class ProtocolFamily:
    """How the scanners of one site acquire: field strength, T1 sequence, parameter ranges, bias, noise, slices.

    ``default`` is the example dataset's mixed 3 T protocol (its random draws are unchanged). The others differ
    the way real sites differ (documentation/example_dataset.md#protocol-families).
    """

    name: str
    description: str
    field_strength_t: float = 3.0
    t1_kind: str = "mixed"  # "mixed" (65 % spgr, 35 % se: the default), "spgr", "se" or "mprage"
    t2_tr: tuple[float, float] = (3500.0, 6500.0)
    t2_te: tuple[float, float] = (80.0, 120.0)
    flair_tr: tuple[float, float] = (8000.0, 11000.0)
    flair_te: tuple[float, float] = (80.0, 140.0)
    bias_log_std: tuple[float, float] = (0.04, 0.12)
    snr_wm: tuple[float, float] = (20.0, 50.0)
    #: every case's z voxels this thick, the nearest whole multiple of the spacing (0: isotropic; None: the
    #: dataset's own --anisotropic_fraction)
    slice_thickness_mm: float | None = None

    def sample(self, rng: np.random.Generator) -> Protocol:
        """Draw one case's sequence parameters."""
        if self.name == "default":
            return sample_protocol(rng)
        if self.t1_kind == "spgr":
            kind, tr, te, flip, ti = "spgr", rng.uniform(8.0, 25.0), rng.uniform(2.0, 5.0), rng.uniform(15.0, 30.0), 0.0
        elif self.t1_kind == "se":
            kind, tr, te, flip, ti = "se", rng.uniform(450.0, 650.0), rng.uniform(10.0, 15.0), 90.0, 0.0
        elif self.t1_kind == "mprage":  # TR here is the time between inversions; TI at the usual 3 T values
            kind, tr, te, flip = "mprage", rng.uniform(2300.0, 2700.0), rng.uniform(2.0, 3.5), rng.uniform(8.0, 9.0)
            ti = rng.uniform(1000.0, 1200.0) * (0.8 if self.field_strength_t == 1.5 else 1.0)
        else:
            raise ValueError(f"Unknown T1 kind {self.t1_kind!r}")
        flair_tr = rng.uniform(*self.flair_tr)
        flair_ti = flair_null_inversion_time(NOMINAL_CSF_T1_FOR_TI, flair_tr) * rng.uniform(0.99, 1.01)
        r1 = rng.uniform(*R1_RANGE) * (1.1 if self.field_strength_t == 1.5 else 1.0)
        return Protocol(t1_kind=kind, t1_tr=tr, t1_te=te, t1_flip=flip, t2_tr=rng.uniform(*self.t2_tr),
                        t2_te=rng.uniform(*self.t2_te), flair_tr=flair_tr, flair_te=rng.uniform(*self.flair_te),
                        flair_ti=flair_ti, r1=r1, r2=r1 * R2_OVER_R1, t1_ti=ti)


PROTOCOL_FAMILIES: dict[str, ProtocolFamily] = {family.name: family for family in (
    ProtocolFamily("default", "3 T, T1 by spoiled gradient echo (65 %) or spin echo (35 %), isotropic or 2-3x "
                              "thicker slices (--anisotropic_fraction); the example dataset as it always was"),
    ProtocolFamily("1.5T_se", "1.5 T (shorter T1), 2D spin-echo T1, lower SNR (12-25), weaker bias, 5 mm slices",
                   field_strength_t=1.5, t1_kind="se", t2_tr=(3000.0, 5000.0), t2_te=(90.0, 110.0),
                   flair_tr=(8000.0, 10000.0), flair_te=(100.0, 140.0), bias_log_std=(0.02, 0.06),
                   snr_wm=(12.0, 25.0), slice_thickness_mm=5.0),
    ProtocolFamily("3T_mprage", "3 T, MPRAGE T1 (inversion-prepared gradient echo: strong grey/white contrast), "
                                "high SNR (40-70), strong multichannel-coil bias, isotropic",
                   t1_kind="mprage", t2_tr=(5000.0, 8000.0), t2_te=(90.0, 110.0), bias_log_std=(0.12, 0.25),
                   snr_wm=(40.0, 70.0), slice_thickness_mm=0.0),
    ProtocolFamily("3T_gre_thick", "3 T, spoiled gradient echo T1, short-TE T2 and FLAIR, 1 x 1 x 3 mm slices "
                                   "(3x the in-plane spacing along z)",
                   t1_kind="spgr", t2_te=(70.0, 90.0), flair_te=(80.0, 100.0), snr_wm=(25.0, 45.0),
                   slice_thickness_mm=3.0),
)}


def spoiled_gradient_echo(pd, t1, t2, tr: float, te: float, flip_deg: float):
    """SPGR/FLASH steady state: PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE/T2), E1 = exp(-TR/T1).

    T2* is approximated by T2 (TE of a few ms makes the factor close to 1 either way).
    """
    alpha = np.deg2rad(flip_deg)
    e1 = np.exp(-tr / t1)
    return pd * np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1) * np.exp(-te / t2)


def spin_echo(pd, t1, t2, tr: float, te: float):
    """Spin echo (90-180): PD (1 - 2 exp(-(TR - TE/2)/T1) + exp(-TR/T1)) exp(-TE/T2)."""
    return pd * (1.0 - 2.0 * np.exp(-(tr - te / 2.0) / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def mprage(pd, t1, t2, tr: float, te: float, ti: float):
    """Inversion-prepared gradient echo, centre of k-space at TI: PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2).

    TR is the time between inversions. The readout train's own saturation is left out, so the contrast is that
    of a magnitude inversion recovery at a short TI: CSF nearly nulled, white matter brightest, grey matter at
    about half of white matter (real MPRAGE: about 0.6-0.7; the readout train softens it).
    """
    return inversion_recovery(pd, t1, t2, tr, te, ti)


def inversion_recovery(pd, t1, t2, tr: float, te: float, ti: float):
    """Magnitude inversion recovery (FLAIR): PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)."""
    return pd * np.abs(1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def with_gadolinium(t1, t2, concentration_mm, r1: float, r2: float):
    """Fast-exchange relaxation enhancement: 1/T = 1/T0 + r C (r in 1/(mM s), times in ms)."""
    t1_new = 1.0 / (1.0 / t1 + r1 * concentration_mm / 1000.0)
    t2_new = 1.0 / (1.0 / t2 + r2 * concentration_mm / 1000.0)
    return t1_new, t2_new


def sequence_signal(channel: str, protocol: Protocol, pd, t1, t2, gadolinium_mm=0.0):
    """Noise-free signal of one tissue (scalars or arrays) for a channel: T1N, T1C, T2W or T2F."""
    if channel == "T1C":
        t1, t2 = with_gadolinium(t1, t2, gadolinium_mm, protocol.r1, protocol.r2)
    if channel in ("T1N", "T1C"):
        if protocol.t1_kind == "spgr":
            return spoiled_gradient_echo(pd, t1, t2, protocol.t1_tr, protocol.t1_te, protocol.t1_flip)
        if protocol.t1_kind == "mprage":
            return mprage(pd, t1, t2, protocol.t1_tr, protocol.t1_te, protocol.t1_ti)
        return spin_echo(pd, t1, t2, protocol.t1_tr, protocol.t1_te)
    if channel == "T2W":
        return spin_echo(pd, t1, t2, protocol.t2_tr, protocol.t2_te)
    if channel == "T2F":
        return inversion_recovery(pd, t1, t2, protocol.flair_tr, protocol.flair_te, protocol.flair_ti)
    raise ValueError(f"Unknown channel {channel!r}; expected T1N, T1C, T2W or T2F")


def add_rician_noise(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma`` per component."""
    real = signal + rng.normal(0.0, sigma, size=signal.shape)
    imaginary = rng.normal(0.0, sigma, size=signal.shape)
    return np.sqrt(real ** 2 + imaginary ** 2)
