"""Cheap reference methods that keep the deep models honest (documentation/baselines.md).

Both are torch modules registered as architectures, so a fitted baseline is stored, loaded, predicted
(sliding window, fold ensembling, export) and evaluated through exactly the same path as a U-Net.
"""
from synthunet.baselines.models import IdentityScale, VoxelRegression

__all__ = ["IdentityScale", "VoxelRegression"]
