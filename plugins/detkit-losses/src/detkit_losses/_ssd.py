"""The SSD paper's multibox loss."""

from __future__ import annotations

from typing import Any, Sequence

from detkit.errors import InputError
from detkit.interfaces import Loss

from ._mining import SSD_NEGATIVE_RATIO, check_mining_arguments, mined_cross_entropy


class SSDMultiBoxLoss(Loss):
    """Softmax cross-entropy with hard-negative mining plus smooth L1, normalised by the positives.

    The loss of Liu et al., "SSD: Single Shot MultiBox Detector" (ECCV 2016),
    equation 1, per sample::

        L = (L_conf + box_weight * L_loc) / max(N, 1)

    with ``N`` the sample's positive anchors (class target ``> 0``);
    ``L_conf`` the softmax cross-entropy summed over the positives and over the
    ``floor(negative_ratio * N)`` negatives with the highest cross-entropy
    (hard-negative mining, 3:1 in the paper); and ``L_loc`` the smooth L1 of the box offsets
    summed over the anchors where ``box_mask`` is 1. A sample without positives
    has no mined negatives and a zero loss, as in the paper (unless
    ``min_negatives`` keeps some).

    Hard-negative mining happens here, from the class predictions and targets,
    so the loss works with the default target assigner, which keeps every
    negative (``negative_ratio=-1``). If the assigner mines as well, the anchors
    it drops (class target ``-1``) are ignored here too.

    Terms: ``("cross_entropy", "smooth_l1")``, each divided by ``max(N, 1)``.

    Parameters
    ----------
    negative_ratio : float, default 3
        Negatives kept per positive (the paper's 3:1).
    box_weight : float, default 1
        Weight of the box term (the paper's alpha = 1).
    sigma : float, default 1
        Smooth-L1 sharpness, MXNet's ``smooth_l1`` ``scalar``: ``(sigma * x) ** 2 / 2``
        where ``|x| < 1 / sigma ** 2``, else ``|x| - 0.5 / sigma ** 2`` (1: the paper's smooth L1).
    min_negatives : int, default 0
        Negatives kept per sample at least, also in a sample without positives.
    """

    def __init__(self, negative_ratio: float = SSD_NEGATIVE_RATIO, box_weight: float = 1.0, sigma: float = 1.0,
                 min_negatives: int = 0) -> None:
        super().__init__()
        check_mining_arguments("SSDMultiBoxLoss", negative_ratio, min_negatives)
        if isinstance(box_weight, bool) or not isinstance(box_weight, (int, float)) or not box_weight >= 0:
            raise InputError(f"The 'box_weight' argument of SSDMultiBoxLoss must be >= 0; got {box_weight!r} instead.")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise InputError(f"The 'sigma' argument of SSDMultiBoxLoss must be > 0; got {sigma!r} instead.")
        self.negative_ratio = float(negative_ratio)
        self.box_weight = float(box_weight)
        self.sigma = float(sigma)
        self.min_negatives = int(min_negatives)

    @property
    def term_names(self) -> Sequence[str]:
        return ("cross_entropy", "smooth_l1")

    def hybrid_forward(
        self, F: Any, class_preds: Any, box_preds: Any, class_targets: Any, box_targets: Any, box_mask: Any
    ) -> tuple[Any, Any, Any]:
        cross_entropy, positives = mined_cross_entropy(
            F, class_preds, class_targets, self.negative_ratio, self.min_negatives)  # (B,), (B,)
        box = F.smooth_l1((box_preds - box_targets) * box_mask, scalar=self.sigma)  # (B, N*4)
        box = F.sum(box, axis=1)  # (B,)
        normaliser = F.maximum(positives, 1)  # (B,)
        cross_entropy = cross_entropy / normaliser
        box = box / normaliser
        return cross_entropy + self.box_weight * box, cross_entropy, box
