"""Reading a case's images (:func:`synthunet.dataset.raw_cases.read_case_images`) and the preprocessing /
reverting steps around the network.

:class:`PlansPreprocessing` is what prediction uses: the preprocessing package's inference functions
(crop to the brain, resample to the plans' spacing, Nyúl + range scaling; and back). Anything with the
same two methods can replace it (:class:`IdentityPreprocessing`, for tests and benchmarks). Instances
travel to worker processes, so they must pickle.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np

from synthunet.dataset.image_io import Geometry
from synthunet.dataset.raw_cases import read_case_images
from synthunet.errors import InputError, raise_for_case
from synthunet.plans import Plans


class CasePreprocessing(Protocol):
    """Preprocess the raw images of a case for one model, and bring its prediction back."""

    def preprocess(self, images: Mapping[str, np.ndarray], geometry: Geometry) -> tuple[np.ndarray, dict]:
        """Raw images (channel name -> (z, y, x)) -> network input channels ``(len(inputs), z', y', x')``
        in the model's ``inputs`` order, and the properties :meth:`revert` needs."""

    def revert(self, prediction: np.ndarray, properties: dict) -> np.ndarray:
        """``(z', y', x')`` prediction on the preprocessed scale -> raw geometry and raw units, >= 0."""


def read_and_preprocess(case_id: str, files: Mapping[str, Path],
                        preprocessing: CasePreprocessing) -> tuple[np.ndarray, dict, Geometry]:
    """Worker: read a case's files and preprocess them (an error names the case)."""
    images, geometry = read_case_images(case_id, files)
    try:
        data, properties = preprocessing.preprocess(images, geometry)
    except Exception as error:  # a user-facing problem names the case; a bug keeps its traceback
        raise_for_case(case_id, error)
    return data, properties, geometry


@dataclass
class PlansPreprocessing:
    """The real preprocessing of a model (its plans, configuration, dataset channels, inputs and target)."""

    plans: Plans | Mapping
    configuration: str
    channels: list[str]
    inputs: list[str]
    target: str
    #: an input whose own landmarks the export uses (super-resolution: the low-resolution copy of the target)
    landmarks_from: str | None = None

    def preprocess(self, images: Mapping[str, np.ndarray], geometry: Geometry) -> tuple[np.ndarray, dict]:
        from synthunet.preprocessing.inference import preprocess_case_for_inference

        missing = [c for c in self.inputs if c not in images]
        if missing:
            raise InputError(f"input sequence(s) {', '.join(missing)} missing")
        names = list(images)
        data, properties = preprocess_case_for_inference([images[n] for n in names], geometry, self.plans,
                                                         self.configuration, names)
        selected = data[[self.channels.index(c) for c in self.inputs]]  # data holds every channel, index order
        return np.ascontiguousarray(selected, dtype=np.float32), properties

    def revert(self, prediction: np.ndarray, properties: dict) -> np.ndarray:
        from synthunet.preprocessing.inference import revert_preprocessing

        result = revert_preprocessing(prediction, properties, self.plans, self.configuration, self.target,
                                      landmarks_from=self.landmarks_from)
        return np.maximum(np.asarray(result, dtype=np.float32), 0)


@dataclass
class IdentityPreprocessing:
    """No cropping, resampling or normalisation: the inputs are stacked as they are, and the prediction
    comes back unchanged (clamped at 0 with ``clamp_negative``), except that voxels where every input is 0
    (outside the brain, as in the training preprocessing) become 0. For tests, benchmarks and images that
    are already normalised."""

    inputs: list[str]
    clamp_negative: bool = True

    def preprocess(self, images: Mapping[str, np.ndarray], geometry: Geometry) -> tuple[np.ndarray, dict]:
        missing = [c for c in self.inputs if c not in images]
        if missing:
            raise InputError(f"input sequence(s) {', '.join(missing)} missing")
        data = np.stack([np.asarray(images[c], dtype=np.float32) for c in self.inputs])
        return data, {"geometry": geometry.to_dict(), "brain_mask": (data != 0).any(axis=0)}

    def revert(self, prediction: np.ndarray, properties: dict) -> np.ndarray:
        prediction = np.array(prediction, dtype=np.float32)
        prediction[~properties["brain_mask"]] = 0
        return np.maximum(prediction, 0) if self.clamp_negative else prediction
