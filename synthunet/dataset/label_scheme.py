"""Tumour labels and BraTS regions read from dataset.json's ``labels`` (and ``regions_class_order``).

Everything that needs to know which label value is which tumour part (the evaluation's per-label regions,
the WT / TC / ET Dice of the downstream segmenter check and of the segmenter's validation) asks a
:class:`LabelScheme` instead of assuming a numbering. dataset.json may declare its labels in two ways:

Plain labels (synthUNet, nnU-Net v1/v2, BraTS 2023)::

    "labels": {"background": 0, "NCR": 1, "ED": 2, "ET": 3}

Each foreground name is matched (case, ``_``/``-``/space, tumour/tumor and oedema/edema do not matter) against
the names in :data:`LABEL_ALIASES`: NCR (necrosis / non-enhancing tumour core: "NCR", "necrosis",
"necrotic", "non-enhancing", "NETC", "NCR/NET", "core", ...), ED (edema: "ED", "edema", "oedema", "SNFH",
...) and ET (enhancing tumour: "ET", "enhancing", "enhancing tumor", ...). Then ET = {ET}, TC = {NCR, ET}
and WT = every foreground label. A single foreground label named like a whole tumour ("tumour", "tumor",
"lesion", "whole tumor", "WT") gives WT = {that label}. BraTS 2023 (1 NCR, 2 ED, 3 ET) is exactly this
with the names the BraTS challenge uses; BraTS 2021's 4 for ET works too (``"ET": 4``).

nnU-Net v2 regions (e.g. nnU-Net's own BraTS conversion, Dataset137)::

    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
    "regions_class_order": [1, 2, 3]

The label files (``labelsTr``) of such a dataset hold plain integers (Dataset137: 1 edema, 2 necrosis /
non-enhancing core, 3 enhancing tumour); each region lists the values whose voxels belong to it, so the
regions are unions of label values and are used as they are: WT = {1, 2, 3}, TC = {2, 3}, ET = {3}.
``regions_class_order[i]`` is the value nnU-Net writes into its predicted label maps for the voxels of the
i-th foreground region that lie in no later region (it paints the regions in order, each over the ones
before); predictions therefore hold the same plain values as the label files. For this to give back the
regions, ``regions_class_order[i]`` must belong to region i and to no later region (checked; a dataset.json
that breaks it is refused). The value of each tumour part follows from the nested regions: ET = the ET
region, NCR = TC minus ET, ED = WT minus TC (Dataset137: ED 1, NCR 2, ET 3). Region names are matched
against :data:`REGION_ALIASES` ("whole tumor" / "WT", "tumor core" / "TC", "enhancing tumor" / "ET").
``regions_class_order`` may be left out (the regions alone define the mapping); nnU-Net itself needs it.

Names used in reports: NCR, ED and ET for the values recognised as such (so a BraTS 2023 and a Dataset137
dataset report the same regions under the same names), otherwise the dataset.json name (plain labels) or
``label_{value}`` (regions).

A region that cannot be mapped (an unrecognised label name, a tumour part missing) is never guessed: the
scheme leaves it out, and whoever asks for it (:meth:`LabelScheme.check_regions`, e.g. the WT / TC / ET
Dice) gets a :class:`LabelSchemeError` naming the labels that could not be mapped and how to rename them.
The tumour (labels > 0) and healthy regions need no mapping, so a dataset with one "tumour" label works
for them.

This module imports only :mod:`synthunet.errors` and numpy, so every layer can use it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from synthunet.errors import InputError

#: the tumour parts, in report order
TUMOUR_PARTS = ("NCR", "ED", "ET")
#: the BraTS evaluation regions, in report order
BRATS_REGIONS = ("WT", "TC", "ET")
#: the BraTS 2023 labels: what synth_convert_brats writes, and the default where no dataset.json is given
BRATS_2023_LABELS: dict[str, int] = {"background": 0, "NCR": 1, "ED": 2, "ET": 3}
#: the labels of nnU-Net's BraTS conversion (Dataset137_BraTS2021), with regions
NNUNET_BRATS_REGION_LABELS: dict[str, object] = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                                 "enhancing tumor": 3}
NNUNET_BRATS_REGIONS_CLASS_ORDER = [1, 2, 3]

_GENERIC_TUMOUR = "tumour"
#: plain label names (normalised, see :func:`normalise_name`) -> tumour part
LABEL_ALIASES: dict[str, frozenset[str]] = {
    "NCR": frozenset({
        "ncr", "net", "ncr net", "netc", "nec", "necrosis", "necrotic", "necrotic core", "necrotic tumor",
        "necrotic tumor core", "non enhancing", "nonenhancing", "non enhancing core", "non enhancing tumor",
        "non enhancing tumor core", "nonenhancing tumor core", "necrotic non enhancing tumor core",
        "necrotic and non enhancing tumor core", "necrotic and non enhancing tumor", "necrosis non enhancing",
        "necrotic non enhancing", "core"}),
    "ED": frozenset({
        "ed", "edema", "edematous", "peritumoral edema", "edematous invaded tissue",
        "peritumoral edematous invaded tissue", "snfh", "surrounding non enhancing flair hyperintensity",
        "flair hyperintensity", "surrounding flair hyperintensity", "invaded tissue"}),
    "ET": frozenset({
        "et", "enhancing", "enhancing tumor", "enhancing core", "enhancing tumor core", "gd enhancing",
        "gd enhancing tumor", "contrast enhancing", "contrast enhancing tumor", "enhancement"}),
    _GENERIC_TUMOUR: frozenset({"tumor", "lesion", "whole tumor", "wt", "tumor mask"}),
}
#: region names of nnU-Net region datasets (normalised) -> BraTS region
REGION_ALIASES: dict[str, frozenset[str]] = {
    "WT": frozenset({"wt", "whole tumor", "whole", "tumor", "complete tumor", "whole tumor wt"}),
    "TC": frozenset({"tc", "tumor core", "core", "tumor core tc"}),
    "ET": frozenset({"et", "enhancing tumor", "enhancing", "enhancing core", "gd enhancing tumor",
                     "enhancing tumor et"}),
}
_REPORT_NAMES_RESERVED = ("brain", "tumour", "healthy")
_REGION_NAMES = {"WT": "whole tumor", "TC": "tumor core", "ET": "enhancing tumor"}
_FIX_HINT = ("name the labels in dataset.json as in BraTS 2023 ({\"background\": 0, \"NCR\": 1, \"ED\": 2, "
             "\"ET\": 3}, with your own values) or declare nnU-Net regions ({\"background\": 0, \"whole tumor\": "
             "[...], \"tumor core\": [...], \"enhancing tumor\": ...}); documentation/dataset_format.md, "
             "'Labels and regions'")


class LabelSchemeError(InputError):
    """dataset.json's labels are malformed, or cannot be mapped to the tumour parts / regions asked for."""

    hint = "documentation/dataset_format.md ('Labels and regions') lists the names synthUNet recognises"


def normalise_name(name: str) -> str:
    """Lower case, every run of non-alphanumeric characters one space, tumour -> tumor, oedem -> edem."""
    text = re.sub(r"[^a-z0-9]+", " ", str(name).lower()).strip()
    return text.replace("tumour", "tumor").replace("oedem", "edem")


def _match(name: str, aliases: Mapping[str, frozenset[str]]) -> str | None:
    normalised = normalise_name(name)
    for role, names in aliases.items():
        if normalised in names:
            return role
    return None


# ---- structure ------------------------------------------------------------------------------------------
def _as_value(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)


def parse_labels(labels, regions_class_order=None
                 ) -> tuple[dict[str, int | tuple[int, ...]], tuple[int, ...] | None, list[str]]:
    """Check the structure of dataset.json's ``labels`` (and ``regions_class_order``).

    Returns ``(labels, regions_class_order, problems)``: names -> an int (plain label, or a one-value
    region) or a tuple of ints (a region), the order as a tuple (None when absent), and every problem found
    (empty: well formed). Names are not interpreted here (see :func:`label_scheme_from_labels`).
    """
    problems: list[str] = []
    if labels is None:
        labels = {}
    if not isinstance(labels, dict):
        return {}, None, ["'labels' must be an object like {\"background\": 0, \"NCR\": 1}"]
    clean: dict[str, int | tuple[int, ...]] = {}
    for key, value in labels.items():
        if isinstance(value, (list, tuple)):
            values = [_as_value(v) for v in value]
            if not values or any(v is None or v <= 0 for v in values) or len(set(values)) != len(values):
                problems.append(f"labels[{key!r}] = {value!r}: a region must list distinct label values > 0")
                continue
            clean[str(key)] = values[0] if len(values) == 1 else tuple(values)
            continue
        number = _as_value(value)
        if number is None or number < 0:
            problems.append(f"labels[{key!r}] = {value!r} must be a non-negative integer or, for an nnU-Net "
                            "region, a list of label values")
            continue
        clean[str(key)] = number
    if clean and 0 not in [v for v in clean.values() if isinstance(v, int)]:
        problems.append("'labels' must declare the background as 0")
    order: tuple[int, ...] | None = None
    if regions_class_order is not None:
        values = [_as_value(v) for v in regions_class_order] if isinstance(regions_class_order, (list, tuple)) \
            else None
        if values is None or any(v is None or v <= 0 for v in values):
            problems.append(f"'regions_class_order' = {regions_class_order!r} must be a list of label values > 0")
        else:
            order = tuple(values)
    region_format = order is not None or any(isinstance(v, tuple) for v in clean.values())
    foreground = {k: v for k, v in clean.items() if v != 0}
    zero_names = [k for k, v in clean.items() if v == 0]
    if len(zero_names) > 1:
        problems.append(f"labels {', '.join(map(repr, zero_names))} all have the value 0; only the background may")
    if not region_format:
        seen: dict[int, str] = {}
        for name, value in foreground.items():
            if value in seen:
                problems.append(f"labels {seen[value]!r} and {name!r} have the same value {value}")
            seen.setdefault(value, name)
    elif order is not None and not problems:
        problems += _check_regions_class_order(foreground, order)
    return clean, order, problems


def _region_set(value: int | tuple[int, ...]) -> frozenset[int]:
    return frozenset(value) if isinstance(value, tuple) else frozenset({value})


def _check_regions_class_order(regions: Mapping[str, int | tuple[int, ...]], order: tuple[int, ...]) -> list[str]:
    """nnU-Net paints region i with ``order[i]`` over the earlier ones: that value must lie in region i and
    in no later region, or the written label maps would not give back the regions."""
    names = list(regions)
    if len(order) != len(names):
        return [f"'regions_class_order' has {len(order)} value(s) but 'labels' declares {len(names)} region(s) "
                f"besides the background ({', '.join(map(repr, names))}); give one value per region, in the "
                "order of 'labels'"]
    problems = []
    sets = [_region_set(regions[n]) for n in names]
    for i, (name, value) in enumerate(zip(names, order)):
        if value not in sets[i]:
            problems.append(f"regions_class_order gives region {name!r} the value {value}, which is not in that "
                            f"region {sorted(sets[i])}")
            continue
        later = [names[j] for j in range(i + 1, len(names)) if value in sets[j]]
        if later:
            problems.append(f"regions_class_order gives region {name!r} the value {value}, which also belongs to "
                            f"the later region {later[0]!r}: nnU-Net would overwrite it there, and voxels written "
                            f"as {value} would be read back as {later[0]!r}")
    return problems


# ---- the scheme ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelScheme:
    """Which label values are which tumour part, and the BraTS regions as sets of label values.

    ``values``: the foreground values the label files may hold, ascending. ``names``: value -> report name
    (NCR / ED / ET where recognised), in report order (tumour parts first). ``parts``: NCR / ED / ET -> the
    values of that part (only the parts found). ``regions``: WT / TC / ET -> values (only those that could
    be mapped). ``unmapped``: region -> why it could not be mapped. ``uses_regions``: dataset.json declares
    nnU-Net regions. ``source``: where the scheme comes from (for messages and summary.json).
    ``unrecognised``: the dataset.json labels (or regions) whose names were not recognised, e.g. ``"'foo' (1)"``.
    """

    values: tuple[int, ...]
    names: dict[int, str]
    parts: dict[str, tuple[int, ...]]
    regions: dict[str, tuple[int, ...]]
    unmapped: dict[str, str] = field(default_factory=dict)
    uses_regions: bool = False
    source: str = "dataset.json"
    unrecognised: tuple[str, ...] = ()

    @property
    def available_regions(self) -> tuple[str, ...]:
        """The BraTS regions this scheme can compute, in WT, TC, ET order."""
        return tuple(r for r in BRATS_REGIONS if r in self.regions)

    def part_value(self, part: str) -> int | None:
        """The value of a tumour part (``"NCR"``, ``"ED"``, ``"ET"``) when it is a single value, else None."""
        values = self.parts.get(part, ())
        return values[0] if len(values) == 1 else None

    def name_of(self, value: int) -> str:
        """Report name of a label value (``label_{value}`` for values the scheme does not declare)."""
        return self.names.get(int(value), f"label_{int(value)}")

    def check_regions(self, regions: Iterable[str] = BRATS_REGIONS) -> tuple[str, ...]:
        """Return ``regions`` if the scheme maps every one; raise :class:`LabelSchemeError` naming the rest."""
        regions = tuple(regions)
        unknown = [r for r in regions if r not in BRATS_REGIONS]
        if unknown:
            raise LabelSchemeError(f"unknown region(s) {', '.join(unknown)}; the regions are "
                                   f"{', '.join(BRATS_REGIONS)}")
        missing = [r for r in regions if r not in self.regions]
        if missing:
            reasons = "; ".join(f"{r}: {self.unmapped.get(r, 'not declared')}" for r in missing)
            not_mapped = (f" Could not map {'region' if self.uses_regions else 'label'}(s) "
                          f"{', '.join(self.unrecognised)}." if self.unrecognised else "")
            raise LabelSchemeError(f"The labels of {self.source} cannot be mapped to the region(s) "
                                   f"{', '.join(missing)} ({reasons}).{not_mapped} To fix it, {_FIX_HINT}.")
        return regions

    def region_mask(self, labels: np.ndarray, region: str) -> np.ndarray:
        """Boolean mask of a BraTS region in a label map (values in the region's set)."""
        self.check_regions((region,))
        return np.isin(labels, self.regions[region])

    def check_values(self, labels: np.ndarray, what: str = "label map") -> None:
        """Raise :class:`LabelSchemeError` when ``labels`` holds values the scheme does not declare (e.g. a
        segmenter writing BraTS 2021's 4 where dataset.json says ET is 3): a region Dice would be wrong."""
        present = np.unique(labels)
        extra = sorted(int(v) for v in present if int(v) != 0 and int(v) not in self.values)
        if extra:
            raise LabelSchemeError(f"The {what} holds label value(s) {extra} that {self.source} does not declare "
                                   f"(declared: {', '.join(f'{v} {self.name_of(v)}' for v in self.names)}); "
                                   "the label map and dataset.json use different numberings",
                                   hint="give the dataset.json that matches the label maps (-d or --dataset_json), "
                                        "or convert the label maps to its numbering")

    def as_labels(self) -> dict[str, int]:
        """Plain ``{name: value}`` with the background (names as reported), e.g. for a segmenter's classes."""
        return {"background": 0, **{name: value for value, name in sorted(self.names.items())}}

    def describe(self) -> dict:
        """A JSON-able description (summary.json's ``label_scheme``)."""
        return {"source": self.source, "format": "nnU-Net regions" if self.uses_regions else "labels",
                "labels": {name: value for value, name in self.names.items()},
                "regions": {r: list(v) for r, v in self.regions.items()},
                "unmapped_regions": dict(self.unmapped), "unrecognised": list(self.unrecognised)}


def _report_names(values: Sequence[int], parts: Mapping[str, tuple[int, ...]],
                  fallback: Mapping[int, str]) -> dict[int, str]:
    """value -> report name, tumour parts first (NCR, ED, ET), then the other values ascending."""
    names: dict[int, str] = {}
    for part in TUMOUR_PARTS:
        if len(parts.get(part, ())) == 1:
            names[parts[part][0]] = part
    used = set(names.values())
    for value in sorted(values):
        if value in names:
            continue
        name = fallback.get(value, f"label_{value}")
        if name in used or name.lower() in _REPORT_NAMES_RESERVED:
            name = f"label_{value}"
        names[value] = name
        used.add(name)
    return names


def _group_by_alias(names, aliases) -> tuple[dict[str, list[str]], list[str]]:
    """``({role: [names matching it]}, [names matching no role])`` for the names, in their order."""
    groups: dict[str, list[str]] = {}
    unrecognised = []
    for name in names:
        role = _match(name, aliases)
        if role is None:
            unrecognised.append(name)
        else:
            groups.setdefault(role, []).append(name)
    return groups, unrecognised


def _plain_scheme(foreground: dict[str, int], source: str) -> LabelScheme:
    roles, unrecognised = _group_by_alias(foreground, LABEL_ALIASES)
    unmapped_reasons = []
    if unrecognised:
        unmapped_reasons.append("label(s) " + ", ".join(f"{n!r}" for n in unrecognised)
                                + " not recognised as NCR, ED or ET")
    parts: dict[str, tuple[int, ...]] = {}
    ambiguous = []
    for role, names in roles.items():
        if len(names) > 1:
            ambiguous.append(f"{' and '.join(repr(n) for n in names)} all look like {role}")
        elif role != _GENERIC_TUMOUR:
            parts[role] = (foreground[names[0]],)
    if ambiguous:
        unmapped_reasons.append("; ".join(ambiguous))
    generic = roles.get(_GENERIC_TUMOUR, [])
    if generic and len(foreground) > 1:
        unmapped_reasons.append(f"{generic[0]!r} names the whole tumour, but there are other labels too")
    problem = "; ".join(unmapped_reasons)
    regions: dict[str, tuple[int, ...]] = {}
    unmapped: dict[str, str] = {}
    if not problem and foreground:
        regions["WT"] = tuple(sorted(foreground.values()))
    else:
        unmapped["WT"] = problem or "no tumour label is declared"
    if "ET" in parts:
        regions["ET"] = parts["ET"]
    else:
        unmapped["ET"] = "no label named like ET (enhancing tumour)"
    if "ET" in parts and "NCR" in parts:
        regions["TC"] = tuple(sorted(parts["NCR"] + parts["ET"]))
    else:
        lacking = " and ".join(p for p in ("NCR", "ET") if p not in parts)
        unmapped["TC"] = f"needs labels named like NCR and ET, no {lacking}"
    names = _report_names(list(foreground.values()), parts, {v: k for k, v in foreground.items()})
    return LabelScheme(values=tuple(sorted(foreground.values())), names=names, parts=parts,
                       regions={r: regions[r] for r in BRATS_REGIONS if r in regions},
                       unmapped={r: unmapped[r] for r in BRATS_REGIONS if r in unmapped}, source=source,
                       unrecognised=tuple(f"{n!r} ({foreground[n]})" for n in unrecognised))


def _region_scheme(foreground: dict[str, int | tuple[int, ...]], source: str) -> LabelScheme:
    sets = {name: _region_set(value) for name, value in foreground.items()}
    values = sorted(set().union(*sets.values())) if sets else []
    found, unrecognised = _group_by_alias(foreground, REGION_ALIASES)
    regions: dict[str, tuple[int, ...]] = {}
    unmapped: dict[str, str] = {}
    for region in BRATS_REGIONS:
        names = found.get(region, [])
        if len(names) == 1:
            regions[region] = tuple(sorted(sets[names[0]]))
        elif names:
            unmapped[region] = f"regions {' and '.join(repr(n) for n in names)} all look like {region}"
        else:
            unmapped[region] = f"no region named like {region} ({_REGION_NAMES[region]})"
    parts: dict[str, tuple[int, ...]] = {}
    wt, tc, et = (frozenset(regions[r]) if r in regions else None for r in BRATS_REGIONS)
    if et is not None:
        parts["ET"] = tuple(sorted(et))
    if tc is not None and et is not None and et <= tc and tc - et:
        parts["NCR"] = tuple(sorted(tc - et))
    if wt is not None and tc is not None and tc <= wt and wt - tc:
        parts["ED"] = tuple(sorted(wt - tc))
    return LabelScheme(values=tuple(values), names=_report_names(values, parts, {}), parts=parts,
                       regions=regions, unmapped=unmapped, uses_regions=True, source=source,
                       unrecognised=tuple(f"{n!r} {sorted(sets[n])}" for n in unrecognised))


def label_scheme_from_labels(labels: Mapping | None, regions_class_order: Sequence[int] | None = None,
                             source: str = "dataset.json") -> LabelScheme:
    """The scheme of dataset.json's ``labels`` (plain or nnU-Net regions) and ``regions_class_order``.

    Raises :class:`LabelSchemeError` when the labels are malformed (see :func:`parse_labels`). Labels whose
    names are not recognised do not raise here: the regions they block are listed in ``unmapped`` and raise
    only when asked for (:meth:`LabelScheme.check_regions`).
    """
    clean, order, problems = parse_labels(dict(labels) if labels is not None else {}, regions_class_order)
    if problems:
        raise LabelSchemeError(f"{source}: the labels are malformed:\n  - " + "\n  - ".join(problems))
    foreground = {name: value for name, value in clean.items() if value != 0}
    if order is not None or any(isinstance(v, tuple) for v in foreground.values()):
        return _region_scheme(foreground, source)
    return _plain_scheme(foreground, source)  # type: ignore[arg-type]


def brats_2023_scheme(source: str = "the BraTS 2023 default labels (1 NCR, 2 ED, 3 ET)") -> LabelScheme:
    """The BraTS 2023 numbering: where no dataset.json (or one without labels) is given."""
    return label_scheme_from_labels(BRATS_2023_LABELS, source=source)


def label_scheme_from_dataset_json(content: Mapping, source: str = "dataset.json") -> LabelScheme:
    """The scheme of a dataset.json dict; BraTS 2023 (:func:`brats_2023_scheme`) when it declares no labels."""
    labels = content.get("labels") or None
    if not labels:
        return brats_2023_scheme(f"the BraTS 2023 default labels (1 NCR, 2 ED, 3 ET; {source} declares none)")
    return label_scheme_from_labels(labels, content.get("regions_class_order"), source)
