"""The embedded example dataset: a physics-based multi-contrast brain-tumour phantom.

``generate_case(index, seed, spacing)`` simulates one case in memory; the command
``synth_make_example_dataset`` (:mod:`synthunet.dataset.example.generate`) writes a raw dataset.
See documentation/example_dataset.md.
"""
from synthunet.dataset.example.phantom import CHANNELS, LABELS, TISSUES, PhantomCase, generate_case

__all__ = ["CHANNELS", "LABELS", "TISSUES", "PhantomCase", "generate_case"]
