"""synthUNet: a self-configuring pipeline for MRI sequence synthesis."""

__version__ = "0.1.0"
