"""Sharing trained models: one model folder (chosen folds and checkpoints) as a zip with a checksum manifest.

``synth_export_model_to_zip`` writes the zip, ``synth_install_pretrained_model_from_zip`` checks it and installs
it under ``$synthUNet_results`` (documentation/predict.md, "Sharing a trained model").
"""
from synthunet.model_sharing.archive import (MANIFEST_NAME, ModelArchiveError, export_model_folder_to_zip,
                                             export_model_to_zip, install_model_from_zip, read_manifest)

__all__ = ["MANIFEST_NAME", "ModelArchiveError", "export_model_folder_to_zip", "export_model_to_zip",
           "install_model_from_zip", "read_manifest"]
