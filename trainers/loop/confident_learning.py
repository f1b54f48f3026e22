"""Which given labels look wrong, from out-of-sample class probabilities: the confident-learning
rule of Northcutt, Jiang and Chuang (JAIR 2021), as cleanlab's ``find_label_issues`` applies it
with ``filter_by="prune_by_noise_rate"``. Pure numpy; the red-blue loop feeds it the replicas'
cross-predictions (``trainers.loop.cross_predictions``).

1. Per-class thresholds: t_j is the mean probability of class j over the rows given label j
   (their mean self-confidence).
2. The confident joint C[i, j]: rows given label i whose probability of class j reaches t_j
   (the highest such class when several do), counted; then calibrated so that each row of C sums
   to the number of rows given label i.
3. Pruning by noise rate: for each given label i and each other class j, the round(C[i, j]) rows
   given i with the largest margin p_j - p_i are flagged.
4. A row whose most probable class is its given label is never flagged, and at most
   ``max_fraction`` of each group of rows (a red-blue half) is: the rows with the lowest
   probability of their given label are kept.
"""

from __future__ import annotations

import numpy as np


def per_class_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j: the mean probability of class j over the rows given label j (inf for a class no
    row is given, so that nothing is counted into it)."""
    num_classes = probabilities.shape[1]
    thresholds = np.full(num_classes, np.inf)
    for j in range(num_classes):
        given = labels == j
        if given.any():
            thresholds[j] = float(probabilities[given, j].mean())
    return thresholds


def confident_joint(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The calibrated confident joint: C[i, j] estimates how many rows given label i truly
    belong to class j."""
    num_classes = probabilities.shape[1]
    above = probabilities >= per_class_thresholds(probabilities, labels) - 1e-9
    confident = above.any(axis=1)
    assigned = np.where(above, probabilities, -np.inf).argmax(axis=1)
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (labels[confident], assigned[confident]), 1.0)
    given_counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    row_sums = joint.sum(axis=1, keepdims=True)
    return np.divide(
        joint * given_counts[:, None], row_sums, out=np.zeros_like(joint), where=row_sums > 0
    )


def find_label_issues(
    probabilities: np.ndarray,
    labels: np.ndarray,
    groups: list[np.ndarray] | None = None,
    max_fraction: float = 1.0,
) -> np.ndarray:
    """A boolean mask of the rows whose given label ``labels`` (class indices) is likely wrong,
    by the rule above; ``groups``: position arrays (the halves) each capped at ``max_fraction``
    of its rows."""
    labels = np.asarray(labels, dtype=np.int64)
    joint = confident_joint(probabilities, labels)
    flagged = np.zeros(len(labels), dtype=bool)
    for i in range(probabilities.shape[1]):
        given = np.flatnonzero(labels == i)
        for j in range(probabilities.shape[1]):
            count = min(int(round(joint[i, j])), len(given))
            if j == i or count == 0:
                continue
            margin = probabilities[given, j] - probabilities[given, i]
            flagged[given[np.argsort(-margin, kind="stable")[:count]]] = True
    flagged &= probabilities.argmax(axis=1) != labels
    self_confidence = probabilities[np.arange(len(labels)), labels]
    for group in groups if groups is not None else [np.arange(len(labels))]:
        cap = int(max_fraction * len(group))
        members = group[flagged[group]]
        if len(members) > cap:
            dropped = members[np.argsort(self_confidence[members], kind="stable")[cap:]]
            flagged[dropped] = False
    return flagged
