"""Inference on raw images: synth_predict, synth_segment, synth_ensemble, the best configuration; the
prediction core it runs on (sliding window, 2.5D orientation fusion, fold statistics) is :mod:`synthunet.prediction`,
its entry points re-exported here."""
from synthunet.inference.predictor import SynthPredictor
from synthunet.inference.segmentation import SegmentationPredictor
from synthunet.prediction.ensembling import VoxelStatistics
from synthunet.prediction.orientation_fusion import Orientation, orientations_for, predict_volume_25d
from synthunet.prediction.sliding_window import (gaussian_importance_map, predict_sliding_window,
                                                 predict_volume_sliding_window)

__all__ = ["Orientation", "SegmentationPredictor", "SynthPredictor", "VoxelStatistics", "gaussian_importance_map", "orientations_for",
           "predict_sliding_window", "predict_volume_25d", "predict_volume_sliding_window"]
