"""UAR / WAR as in DFER-CLIP (SPEC §1.7), returned as fractions in [0, 1].

Conventions:
- WAR = accuracy = trace(confusion) / n.
- UAR = mean recall over the classes that occur in ``labels``. A class absent from the labels has no recall
  (``per_class_recall`` holds ``None``) and is left out of the mean; a class that occurs but is never predicted
  counts with recall 0. This is scikit-learn's ``balanced_accuracy_score`` and the mean of the diagonal of
  DFER-CLIP's row-normalised ``confusion_matrix(labels=range(C))``.
"""
from __future__ import annotations

import numpy as np


def classification_metrics(labels, predictions, n_classes: int) -> dict:
    """Return ``{war, uar, per_class_recall, confusion, n}``; confusion rows = true class, columns = predicted."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    predictions = np.asarray(predictions, dtype=np.int64).ravel()
    if labels.size != predictions.size:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    if labels.size == 0:
        raise ValueError("no samples")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.min() < 0 or values.max() >= n_classes:
            raise ValueError(f"{name} outside 0..{n_classes - 1}")
    confusion = np.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    confusion = confusion.reshape(n_classes, n_classes)
    support = confusion.sum(axis=1)
    present = support > 0
    recall = np.full(n_classes, np.nan)
    recall[present] = np.diag(confusion)[present] / support[present]
    return {
        "war": float(np.trace(confusion) / labels.size),
        "uar": float(recall[present].mean()),
        "per_class_recall": [None if np.isnan(r) else float(r) for r in recall],
        "confusion": confusion.tolist(),
        "n": int(labels.size),
    }
