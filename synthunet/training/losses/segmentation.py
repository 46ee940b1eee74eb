"""nnU-Net's segmentation loss: soft Dice over the foreground classes plus cross-entropy.

``loss = CE(logits, labels) + (1 - soft Dice)`` with nnU-Net's soft Dice (``MemoryEfficientSoftDiceLoss``):
softmax probabilities ``p``, one-hot labels ``y``, per class ``c``
``Dice_c = (2 sum p_c y_c + s) / (sum p_c + sum y_c + s)`` with ``s = 1e-5``. With ``batch_dice`` the sums
run over the whole batch (one Dice per class, nnU-Net's 3d_fullres setting), otherwise per sample and then
averaged. The background class is left out and the foreground classes are averaged. nnU-Net adds ``-Dice``;
``1 - Dice`` differs by a constant (same gradient) and keeps the loss non-negative.

Label maps use the preprocessed convention: ``-1`` outside the brain is background (class 0), as nnU-Net
turns its ``-1`` "outside the non-zero region" into 0.
"""
from __future__ import annotations

import torch
from torch.nn import functional

from synthunet.errors import InputError

#: nnU-Net's smoothing term of the soft Dice
DICE_SMOOTH = 1e-5


def labels_to_classes(labels: torch.Tensor) -> torch.Tensor:
    """``(B, 1, *S)`` or ``(B, *S)`` label map (-1 outside the brain) -> ``(B, *S)`` int64 class indices."""
    if labels.ndim >= 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    return labels.long().clamp_min(0)


def soft_dice(probabilities: torch.Tensor, classes: torch.Tensor, batch_dice: bool = True,
              include_background: bool = False, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Mean soft Dice of ``(B, K, *S)`` probabilities against ``(B, *S)`` class indices (a scalar)."""
    num_classes = probabilities.shape[1]
    if int(classes.max()) >= num_classes:
        raise InputError(f"label value {int(classes.max())} does not fit {num_classes} output classes (the largest "
                         f"label of dataset.json + 1); declare every label value in dataset.json")
    onehot = functional.one_hot(classes, num_classes).movedim(-1, 1).to(probabilities.dtype)
    axes = tuple(range(2, probabilities.ndim))
    intersection = (probabilities * onehot).sum(axes)
    predicted = probabilities.sum(axes)
    reference = onehot.sum(axes)
    if batch_dice:
        intersection, predicted, reference = intersection.sum(0), predicted.sum(0), reference.sum(0)
    dice = (2 * intersection + smooth) / (predicted + reference + smooth).clamp_min(1e-8)
    if not include_background:
        dice = dice[1:] if batch_dice else dice[:, 1:]
    return dice.mean()


def dice_ce_loss(logits: torch.Tensor, labels: torch.Tensor, batch_dice: bool = True,
                 weight_ce: float = 1.0, weight_dice: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``weight_ce * CE + weight_dice * (1 - soft Dice)`` of ``(B, K, *S)`` logits; returns ``(loss, parts)``.

    ``labels``: ``(B, 1, *S)`` label map, -1 (outside the brain) counted as background.
    """
    classes = labels_to_classes(labels)
    dice_loss = 1.0 - soft_dice(torch.softmax(logits, 1), classes, batch_dice=batch_dice)  # checks the label values
    cross_entropy = functional.cross_entropy(logits, classes)
    return weight_ce * cross_entropy + weight_dice * dice_loss, {"ce": cross_entropy, "dice_loss": dice_loss}


def confusion_counts(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(K, 3)`` float64 true positives, false positives and false negatives of the argmax, per class."""
    num_classes = logits.shape[1]
    predicted = logits.argmax(1)
    classes = labels_to_classes(labels)
    counts = torch.zeros((num_classes, 3), dtype=torch.float64)
    for c in range(num_classes):
        hit, truth = predicted == c, classes == c
        counts[c, 0] = float((hit & truth).sum())
        counts[c, 1] = float((hit & ~truth).sum())
        counts[c, 2] = float((~hit & truth).sum())
    return counts


def dice_from_counts(counts: torch.Tensor) -> list[float]:
    """Dice ``2 TP / (2 TP + FP + FN)`` per class from :func:`confusion_counts` sums; NaN where a class is
    absent from both the prediction and the reference (nnU-Net's "pseudo Dice" over validation patches)."""
    values = []
    for tp, fp, fn in counts.tolist():
        denominator = 2 * tp + fp + fn
        values.append(2 * tp / denominator if denominator > 0 else float("nan"))
    return values
