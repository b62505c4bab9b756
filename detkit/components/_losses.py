"""The seed's loss: focal loss on classes plus smooth L1 on the masked box offsets."""

from __future__ import annotations

from typing import Any, Sequence

from .._base import check_number
from ..errors import InputError
from ..interfaces import Loss


_NORMALIZATIONS = ("anchors", "positives")


class FocalSmoothL1Loss(Loss):
    """``focal + box_weight * smooth_l1`` per sample.

    Focal loss (Lin et al., 2017), as the seed writes it, per anchor with true
    class ``j`` and softmax probability ``p_j``: ``-alpha * (1 - p_j) ** gamma * log(p_j)``.
    Smooth L1 of ``x = (prediction - target) * mask``: ``(sigma * x) ** 2 / 2`` where
    ``|x| < 1 / sigma ** 2``, else ``|x| - 0.5 / sigma ** 2``. Anchors whose class
    target is ``-1`` are ignored. Terms: ``("focal", "smooth_l1")``.

    With ``normalization="anchors"`` (the seed) each term is the mean over all
    anchors (focal) or all box offsets (smooth L1) of a sample, so the few
    positive anchors weigh little; ``"positives"`` divides both sums by the
    number of positive anchors of the sample (at least 1) instead, as RetinaNet
    does, which gives the positives far more weight (use a learning rate about
    100x lower).

    Parameters
    ----------
    alpha : float, default 0.25
        Focal-loss weight (the seed's value).
    gamma : float, default 2
        Focal-loss focusing exponent; 0 gives cross-entropy times ``alpha``.
    sigma : float, default 1
        Smooth-L1 sharpness (MXNet's ``smooth_l1`` ``scalar``).
    box_weight : float, default 1
        Weight of the box term (the seed adds the two terms unweighted).
    normalization : {"anchors", "positives"}, default "anchors"
        What each term is divided by (see above).
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, sigma: float = 1.0, box_weight: float = 1.0,
                 normalization: str = "anchors") -> None:
        super().__init__()
        if normalization not in _NORMALIZATIONS:
            raise InputError(
                f"The 'normalization' argument of FocalSmoothL1Loss must be one of {', '.join(_NORMALIZATIONS)}; "
                f"got {normalization!r} instead."
            )
        self.normalization = normalization
        owner = "FocalSmoothL1Loss"
        check_number("alpha", alpha, minimum=0, maximum=1, exclusive_minimum=True, owner=owner)  # a class weight
        check_number("sigma", sigma, minimum=0, exclusive_minimum=True, owner=owner)
        for name, value in (("gamma", gamma), ("box_weight", box_weight)):
            check_number(name, value, minimum=0, owner=owner)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.sigma = float(sigma)
        self.box_weight = float(box_weight)

    @property
    def term_names(self) -> Sequence[str]:
        return ("focal", "smooth_l1")

    def hybrid_forward(
        self, F: Any, class_preds: Any, box_preds: Any, class_targets: Any, box_targets: Any, box_mask: Any
    ) -> tuple[Any, Any, Any]:
        valid = class_targets >= 0  # (B, N); -1 marks ignored anchors
        # log p_j from log_softmax stays finite where softmax underflows to 0.
        log_pj = F.pick(F.log_softmax(class_preds, axis=-1), F.maximum(class_targets, 0), axis=-1)  # (B, N)
        pj = F.exp(log_pj)
        focal = -self.alpha * ((1 - pj) ** self.gamma) * log_pj * valid
        box = F.smooth_l1((box_preds - box_targets) * box_mask, scalar=self.sigma)  # (B, N*4)
        if self.normalization == "anchors":
            focal = F.mean(focal, axis=0, exclude=True)  # (B,)
            box = F.mean(box, axis=0, exclude=True)  # (B,)
        else:
            positives = F.maximum(F.sum(class_targets > 0, axis=0, exclude=True), 1)  # (B,)
            focal = F.sum(focal, axis=0, exclude=True) / positives
            box = F.sum(box, axis=0, exclude=True) / positives
        return focal + self.box_weight * box, focal, box
