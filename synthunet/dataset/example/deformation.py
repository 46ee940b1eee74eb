"""Per-case spatial variation: a random affine pose and size, a low-frequency elastic
displacement and the tumour's mass effect.

Subject frame: millimetres along the output array axes (z, y, x) = (superior, anterior, right).
A subject point ``o`` shows the template tissue at ``t = A (o + u(o) + m(o) - c_s) + c_t``: ``A``
the inverse of the random rotation and scaling, ``u`` the elastic and ``m`` the mass-effect
displacement, ``c_s``/``c_t`` the brain centre in both frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from synthunet.dataset.example.fields import smooth_random_field


@dataclass(frozen=True)
class AffinePose:
    """Template -> subject: ``o = R S (t - c_t) + c_t + translation``; stores what sampling needs."""

    rotation: np.ndarray  # (3, 3) in (z, y, x) axes
    scales: np.ndarray  # (3,) per-axis size factors (subject / template)
    translation: np.ndarray  # (3,) mm
    template_centre: np.ndarray  # (3,) mm, template frame

    @property
    def subject_centre(self) -> np.ndarray:
        return self.template_centre + self.translation

    @property
    def forward_matrix(self) -> np.ndarray:
        return self.rotation @ np.diag(self.scales)

    def to_subject(self, template_points: np.ndarray) -> np.ndarray:
        """Template-frame points (..., 3) -> subject frame (affine part only)."""
        return (template_points - self.template_centre) @ self.forward_matrix.T + self.subject_centre

    def to_template(self, subject_points: np.ndarray) -> np.ndarray:
        """Subject-frame points (3, ...) (already displaced) -> template frame (3, ...)."""
        inverse = np.linalg.inv(self.forward_matrix)
        flat = subject_points.reshape(3, -1) - self.subject_centre[:, None]
        return (inverse @ flat + self.template_centre[:, None]).reshape(subject_points.shape)


def random_pose(rng: np.random.Generator, template_centre: np.ndarray) -> AffinePose:
    """A few degrees of rotation, a smaller-than-MNI brain size with a few percent per-axis jitter, a few mm shift.

    MNI space is larger than a typical native brain (the template brain mask is ~1.9 l), so the global
    scale is drawn from 0.86-0.96 (brain volume ~1.2-1.6 l).
    """
    angles = np.clip(rng.normal(0.0, 4.0, size=3), -10.0, 10.0)
    rotation = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    scales = rng.uniform(0.86, 0.96) * rng.uniform(0.96, 1.04, size=3)
    translation = rng.uniform(-6.0, 6.0, size=3)
    return AffinePose(rotation=rotation, scales=scales, translation=translation,
                      template_centre=np.asarray(template_centre, dtype=float))


def elastic_displacement(rng: np.random.Generator, shape: tuple[int, ...], spacing: float,
                         amplitude_mm: float, correlation_mm: float = 45.0) -> np.ndarray:
    """Low-frequency displacement field (3, *shape) in mm with per-component standard deviation ``amplitude_mm``."""
    return np.stack([amplitude_mm * smooth_random_field(rng, shape, spacing, correlation_mm) for _ in range(3)])


def mass_effect_displacement(points: np.ndarray, centre: np.ndarray, radius_mm: float,
                             amplitude_mm: float) -> np.ndarray:
    """Radial displacement (3, ...) that makes the sampled tissue move away from a tumour centre.

    A subject point at distance ``r`` samples the template at ``r - a * g(r)`` with ``g = r / R`` inside
    the core and ``(R / r)**2`` outside: continuous, one-to-one for ``a < R`` and fading with distance.
    """
    if not 0 <= amplitude_mm < radius_mm:
        raise ValueError(f"mass effect amplitude {amplitude_mm} must lie in [0, radius {radius_mm})")
    offset = points - np.asarray(centre, dtype=float).reshape((3,) + (1,) * (points.ndim - 1))
    distance = np.sqrt((offset ** 2).sum(0))
    safe = np.maximum(distance, 1e-6)
    profile = np.where(distance < radius_mm, distance / radius_mm, (radius_mm / safe) ** 2)
    return (-amplitude_mm * profile / safe) * offset
