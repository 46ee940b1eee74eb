"""Typed plans: the contract between ``synth_plan_and_preprocess``, ``synth_train`` and ``synth_predict``.

A plans file (``{plans_name}.json``, documentation/plans_format.md) is read into :class:`Plans` with
:func:`as_plans`, which checks it: a missing key, a key this version does not know, or a value of the wrong type is
an error that names the key and where it is. The defaults of optional keys are defined here and nowhere else; the
planner writes its choices through the same classes (:meth:`TrainingPlan.to_dict`), so writer and readers cannot
disagree. ``to_dict`` gives back the JSON form, so every plans file written by earlier code round-trips.
The blocks that are free-form by design (``architecture.kwargs``, checked by the network builder; ``estimates`` and
``planned_for``, informational; ``normalization``, checked by :mod:`synthunet.preprocessing.nyul`) stay dicts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from synthunet.errors import InputError

#: the default plans name (``-p``)
DEFAULT_PLANS = "synthUNetPlans"


class PlansError(InputError):
    """A plans file or block is malformed: the message names the key."""

    hint = "documentation/plans_format.md lists every key of a plans file; plan again with synth_plan_experiment"


def _check_keys(block: Any, where: str, required: set[str], optional: set[str]) -> Mapping:
    if not isinstance(block, Mapping):
        raise PlansError(f"{where} must be a JSON object, got {type(block).__name__}")
    missing = sorted(required - set(block))
    if missing:
        raise PlansError(f"{where} lacks {', '.join(repr(k) for k in missing)}")
    unknown = sorted(set(block) - required - optional)
    if unknown:
        raise PlansError(f"{where} has unknown key(s) {', '.join(repr(k) for k in unknown)} "
                         f"(known: {', '.join(sorted(required | optional))})")
    return block


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlansError(f"{where} must be a number, got {value!r}")
    return float(value)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlansError(f"{where} must be an integer, got {value!r}")
    return int(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise PlansError(f"{where} must be a string, got {value!r}")
    return value


def _sequence(value: Any, where: str, item, length: int | None = None) -> tuple:
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        size = f"{length} " if length is not None else ""
        raise PlansError(f"{where} must be a list of {size}values, got {value!r}")
    return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, Mapping):
        raise PlansError(f"{where} must be a JSON object, got {value!r}")
    return dict(value)


@dataclass(frozen=True)
class TrainingPlan:
    """A configuration's ``training`` block: optimiser, schedule and sampling. The planner writes every key; the
    defaults (nnU-Net's, with 50 epochs) serve hand-written plans."""

    optimizer: str = "adamw"
    initial_lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    lr_schedule: str = "poly"
    poly_exponent: float = 0.9
    num_epochs: int = 50
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50
    oversample_tumour: float = 0.33
    grad_clip: float | None = 12.0
    mixed_precision: bool = True

    @classmethod
    def from_dict(cls, block: Any, where: str = "training") -> "TrainingPlan":
        names = {f.name for f in fields(cls)}
        _check_keys(block, where, set(), names)
        values: dict[str, Any] = {}
        for key, value in block.items():
            at = f"{where}.{key}"
            if key in ("optimizer", "lr_schedule"):
                values[key] = _text(value, at)
            elif key in ("num_epochs", "iterations_per_epoch", "val_iterations_per_epoch"):
                values[key] = _integer(value, at)
            elif key == "betas":
                values[key] = _sequence(value, at, _number, 2)
            elif key == "grad_clip":
                values[key] = None if value is None else _number(value, at)
            elif key == "mixed_precision":
                if not isinstance(value, bool):
                    raise PlansError(f"{at} must be true or false, got {value!r}")
                values[key] = value
            else:
                values[key] = _number(value, at)
        return cls(**values)

    def to_dict(self) -> dict:
        """The JSON form (``mixed_precision`` only when switched off: plans have never written it)."""
        block = asdict(self)
        block["betas"] = list(self.betas)
        if self.mixed_precision:
            del block["mixed_precision"]
        return block


@dataclass(frozen=True)
class ResamplingPlan:
    """A configuration's ``resampling`` block (spline orders; nnU-Net's rule for one coarse axis)."""

    order_data: int = 3
    order_seg: int = 0
    separate_z_anisotropy_threshold: float = 3.0
    order_z_data: int = 0
    order_z_seg: int = 0

    @classmethod
    def from_dict(cls, block: Any, where: str = "resampling") -> "ResamplingPlan":
        _check_keys(block, where, set(), {f.name for f in fields(cls)})
        return cls(**{k: _number(v, f"{where}.{k}") if k == "separate_z_anisotropy_threshold"
                      else _integer(v, f"{where}.{k}") for k, v in block.items()})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ArchitecturePlan:
    """A configuration's ``architecture`` block: the network's registered name, its keyword arguments, and the
    closed-form prior under it (``None``: none)."""

    name: str
    kwargs: dict = field(default_factory=dict)
    prior: str | None = None

    @classmethod
    def from_dict(cls, block: Any, where: str = "architecture") -> "ArchitecturePlan":
        _check_keys(block, where, {"name"}, {"kwargs", "prior"})
        prior = block.get("prior")
        return cls(_text(block["name"], f"{where}.name"), _object(block.get("kwargs", {}), f"{where}.kwargs"),
                   None if prior is None else _text(prior, f"{where}.prior"))

    @property
    def base_features(self) -> int:
        """The width of the first (full-resolution) layer; 32 when the kwargs name none."""
        for key in ("features_per_stage", "features"):
            value = self.kwargs.get(key)
            if value:
                return int(value) if isinstance(value, int) else int(value[0])  # rrdb: one width
        return 32

    def to_dict(self) -> dict:
        block: dict[str, Any] = {"name": self.name, "kwargs": dict(self.kwargs)}
        if self.prior is not None:
            block["prior"] = self.prior
        return block


@dataclass(frozen=True)
class ConfigurationPlan:
    """One configuration (``3d_fullres``, ``2.5d``, ``3d_lowres``): data, patch, network and training.

    A 2D (2.5D) configuration also has ``num_slices`` (the k of the k-slice stacks) and ``slicing_axes``.
    Preprocessing needs only ``dimension`` and ``spacing`` (and ``resampling``); training and inference also need
    ``patch_size``, ``batch_size``, ``architecture`` and for 2.5D ``slicing_axes``, which :meth:`check_trainable`
    asks for.
    """

    dimension: int
    data_identifier: str
    spacing: tuple[float, ...]
    patch_size: tuple[int, ...] = ()
    batch_size: int = 0
    architecture: ArchitecturePlan | None = None
    training: TrainingPlan = TrainingPlan()
    resampling: ResamplingPlan = ResamplingPlan()
    median_shape: tuple[int, ...] = ()
    estimates: dict = field(default_factory=dict)
    num_slices: int = 1
    slicing_axes: tuple[int, ...] = ()
    inference_batch_size: int | None = None

    REQUIRED = ("dimension", "spacing")

    @classmethod
    def from_dict(cls, block: Any, where: str, default_identifier: str) -> "ConfigurationPlan":
        """``default_identifier``: the data folder when ``data_identifier`` is absent (``{plans_name}_{name}``)."""
        optional = {f.name for f in fields(cls)} - set(cls.REQUIRED)
        _check_keys(block, where, set(cls.REQUIRED), optional)
        dimension = _integer(block["dimension"], f"{where}.dimension")
        if dimension not in (2, 3):
            raise PlansError(f"{where}.dimension must be 2 (2.5D) or 3, got {dimension}")
        spatial = 2 if dimension == 2 else 3
        batch = block.get("inference_batch_size")
        return cls(
            dimension=dimension,
            data_identifier=_text(block.get("data_identifier", default_identifier), f"{where}.data_identifier"),
            spacing=_sequence(block["spacing"], f"{where}.spacing", _number),
            patch_size=_sequence(block.get("patch_size", []), f"{where}.patch_size", _integer,
                                 spatial if "patch_size" in block else None),
            batch_size=_integer(block.get("batch_size", 0), f"{where}.batch_size"),
            architecture=(ArchitecturePlan.from_dict(block["architecture"], f"{where}.architecture")
                          if "architecture" in block else None),
            training=TrainingPlan.from_dict(block.get("training", {}), f"{where}.training"),
            resampling=ResamplingPlan.from_dict(block.get("resampling", {}), f"{where}.resampling"),
            median_shape=_sequence(block.get("median_shape", []), f"{where}.median_shape", _integer),
            estimates=_object(block.get("estimates", {}), f"{where}.estimates"),
            num_slices=_integer(block.get("num_slices", 1), f"{where}.num_slices"),
            slicing_axes=_sequence(block.get("slicing_axes", []), f"{where}.slicing_axes", _integer),
            inference_batch_size=None if batch is None else _integer(batch, f"{where}.inference_batch_size"))

    @property
    def is_2p5d(self) -> bool:
        return self.dimension == 2

    def check_trainable(self, where: str) -> "ConfigurationPlan":
        """Raise :class:`PlansError` naming what a network needs and ``where`` lacks (itself when complete)."""
        needed = [("patch_size", self.patch_size), ("architecture", self.architecture)]
        if self.is_2p5d:
            needed.append(("slicing_axes", self.slicing_axes))
        missing = [key for key, value in needed if not value] + (["batch_size"] if self.batch_size < 1 else [])
        if missing:
            raise PlansError(f"{where} lacks {', '.join(repr(k) for k in missing)}, which training and inference "
                             "need (a preprocessing-only block)")
        return self

    def to_dict(self) -> dict:
        block: dict[str, Any] = {"dimension": self.dimension}
        if self.is_2p5d:
            block.update(num_slices=self.num_slices, slicing_axes=list(self.slicing_axes))
        block.update(data_identifier=self.data_identifier, spacing=list(self.spacing))
        if self.median_shape:
            block["median_shape"] = list(self.median_shape)
        if self.patch_size:
            block["patch_size"] = list(self.patch_size)
        if self.batch_size:
            block["batch_size"] = self.batch_size
        block["resampling"] = self.resampling.to_dict()
        if self.architecture is not None:
            block["architecture"] = self.architecture.to_dict()
        block["training"] = self.training.to_dict()
        if self.estimates:
            block["estimates"] = dict(self.estimates)
        if self.inference_batch_size is not None:
            block["inference_batch_size"] = self.inference_batch_size
        return block


@dataclass(frozen=True)
class Plans:
    """A whole plans file."""

    plans_name: str
    channel_names: dict[str, str]
    configurations: dict[str, ConfigurationPlan]
    dataset_name: str = ""
    label_values: tuple[int, ...] = ()
    normalization: dict | None = None
    planned_for: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, plans: Any, source: str = "plans") -> "Plans":
        """Check and type a plans dict; ``source`` (e.g. the file) starts every error message."""
        _check_keys(plans, source, {"channel_names", "configurations"},
                    {"plans_name", "dataset_name", "label_values", "normalization", "planned_for"})
        name = _text(plans.get("plans_name", DEFAULT_PLANS), f"{source}: plans_name")
        channels = _object(plans["channel_names"], f"{source}: channel_names")
        for key, value in channels.items():
            if not str(key).isdigit():
                raise PlansError(f"{source}: channel_names keys must be channel indices ('0', '1', ...), got {key!r}")
            _text(value, f"{source}: channel_names[{key!r}]")
        blocks = _object(plans["configurations"], f"{source}: configurations")
        normalization = plans.get("normalization")
        return cls(
            plans_name=name, channel_names={str(k): v for k, v in channels.items()},
            configurations={c: ConfigurationPlan.from_dict(b, f"{source}: configurations.{c}", f"{name}_{c}")
                            for c, b in blocks.items()},
            dataset_name=_text(plans.get("dataset_name", ""), f"{source}: dataset_name"),
            label_values=_sequence(plans.get("label_values", []), f"{source}: label_values", _integer),
            normalization=None if normalization is None else _object(normalization, f"{source}: normalization"),
            planned_for=_object(plans.get("planned_for", {}), f"{source}: planned_for"))

    @property
    def channels(self) -> list[str]:
        """Channel names in channel-index order (the order of the preprocessed arrays)."""
        return [self.channel_names[k] for k in sorted(self.channel_names, key=int)]

    def configuration(self, name: str) -> ConfigurationPlan:
        """The block of configuration ``name``; the error lists the configurations there are."""
        if name not in self.configurations:
            raise PlansError(f"Configuration {name!r} is not in plans {self.plans_name!r} (it has "
                             f"{', '.join(sorted(self.configurations)) or 'none'})")
        return self.configurations[name]

    def with_configuration(self, name: str, block: ConfigurationPlan) -> "Plans":
        """A copy with configuration ``name`` replaced by ``block``."""
        return replace(self, configurations={**self.configurations, name: block})

    def to_dict(self) -> dict:
        plans: dict[str, Any] = {"dataset_name": self.dataset_name, "plans_name": self.plans_name,
                                 "channel_names": dict(self.channel_names), "label_values": list(self.label_values)}
        if self.planned_for:
            plans["planned_for"] = dict(self.planned_for)
        if self.normalization is not None:
            plans["normalization"] = dict(self.normalization)
        plans["configurations"] = {name: block.to_dict() for name, block in self.configurations.items()}
        return plans


def as_plans(plans: "Plans | Mapping", source: str = "plans") -> Plans:
    """``plans`` as :class:`Plans` (a dict is checked and typed; a :class:`Plans` is returned as it is)."""
    return plans if isinstance(plans, Plans) else Plans.from_dict(plans, source)


def as_architecture(block: "ArchitecturePlan | Mapping", where: str = "architecture") -> ArchitecturePlan:
    """``block`` as :class:`ArchitecturePlan` (a dict is checked and typed)."""
    return block if isinstance(block, ArchitecturePlan) else ArchitecturePlan.from_dict(block, where)
