"""Softmax cross-entropy over positives and the hardest negatives, as the SSD paper trains its classifier."""

from __future__ import annotations

from typing import Any

from detkit.errors import InputError

#: Negatives kept per positive: the SSD paper's 3:1 (Liu et al., 2016, section 2.2, "Hard negative mining").
SSD_NEGATIVE_RATIO = 3.0


def check_mining_arguments(owner: str, negative_ratio: float, min_negatives: int) -> None:
    """Raise :class:`InputError` for a negative ratio < 0 or a minimum that is not a non-negative int."""
    if isinstance(negative_ratio, bool) or not isinstance(negative_ratio, (int, float)) or not negative_ratio >= 0:
        raise InputError(
            f"The 'negative_ratio' argument of {owner} must be a number >= 0; got {negative_ratio!r} instead."
        )
    if isinstance(min_negatives, bool) or not isinstance(min_negatives, int) or min_negatives < 0:
        raise InputError(
            f"The 'min_negatives' argument of {owner} must be an int >= 0; got {min_negatives!r} instead."
        )


def mined_cross_entropy(F: Any, class_preds: Any, class_targets: Any, negative_ratio: float,
                        min_negatives: int) -> tuple[Any, Any]:
    """Summed cross-entropy of the positives and of the hardest negatives, per sample.

    Positives are anchors with class target ``> 0``, negatives those with ``0``;
    anchors with ``-1`` (ignored, e.g. mined away by the target assigner) count
    as neither. Of the negatives, a sample keeps the ``max(floor(negative_ratio *
    positives), min_negatives)`` with the highest cross-entropy (the least
    confident background, as MXNet's ``MultiBoxTarget`` mines); the rest do not
    count. The ranking is not differentiated through.

    Parameters
    ----------
    class_preds : ``(B, N, C + 1)`` raw scores
    class_targets : ``(B, N)``

    Returns
    -------
    cross_entropy : ``(B,)``
        Summed over the positives and the kept negatives.
    positives : ``(B,)``
        The number of positive anchors of each sample.
    """
    # -log softmax at the target: (B, N); -1 targets read class 0 and are masked out below.
    cross_entropy = -F.pick(F.log_softmax(class_preds, axis=-1), F.maximum(class_targets, 0), axis=-1)
    positive = class_targets > 0  # (B, N)
    negative = class_targets == 0  # (B, N)
    positives = F.sum(positive, axis=1, keepdims=True)  # (B, 1)
    # Hardness of each negative is its loss; non-negatives get -1 (below any loss) and rank last.
    hardness = F.where(negative, F.BlockGrad(cross_entropy), F.ones_like(cross_entropy) * -1)
    order = F.argsort(hardness, axis=1, is_ascend=False)  # (B, N) anchor indices, hardest first
    rank = F.BlockGrad(F.argsort(order, axis=1))  # (B, N) rank of each anchor, 0 = hardest
    kept = F.maximum(F.floor(positives * negative_ratio), min_negatives)  # (B, 1)
    hard_negative = negative * F.broadcast_lesser(rank, kept)  # (B, N)
    total = F.sum(cross_entropy * (positive + hard_negative), axis=1)  # (B,)
    return total, F.reshape(positives, (-1,))
