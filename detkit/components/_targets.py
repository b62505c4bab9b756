"""Training targets from ``MultiBoxTarget``."""

from __future__ import annotations

from typing import Any, Sequence

from .._base import DEFAULT_VARIANCES, check_int, check_number, check_variances
from ..errors import InputError
from ..interfaces import TargetAssigner

__all__ = ["DEFAULT_VARIANCES", "MultiBoxTargetAssigner", "check_variances"]


class MultiBoxTargetAssigner(TargetAssigner):
    """Match anchors to boxes by IoU and encode offsets, by ``MultiBoxTarget``.

    Each ground-truth box takes its best anchor; every other anchor whose IoU
    with a box reaches ``overlap_threshold`` takes that box. Offsets are encoded
    as ``((cx - acx) / aw / v0, (cy - acy) / ah / v1, log(w / aw) / v2, log(h / ah) / v3)``.
    Without mining, every anchor of an image without objects is background
    (``MultiBoxTarget`` alone would mark them ignored); with mining, such an
    image is ignored.

    Parameters
    ----------
    overlap_threshold : float, default 0.5
        IoU from which an anchor is a positive.
    negative_mining_ratio : float, default -1
        Keep at most this many negatives per positive, the hardest first (their
        class targets become ``-1``, ignored). ``-1`` (the seed) keeps every negative.
    negative_mining_thresh : float, default 0.5
        Anchors with an IoU above this are never mined as negatives.
    minimum_negative_samples : int, default 0
        Keep at least this many negatives per image when mining.
    variances : sequence of 4 floats, default (0.1, 0.1, 0.2, 0.2)
        Scales of the encoded offsets; the post-processor must decode with the same.
    """

    def __init__(
        self,
        overlap_threshold: float = 0.5,
        negative_mining_ratio: float = -1.0,
        negative_mining_thresh: float = 0.5,
        minimum_negative_samples: int = 0,
        variances: Sequence[float] = DEFAULT_VARIANCES,
    ) -> None:
        super().__init__()
        owner = "MultiBoxTargetAssigner"
        check_number("overlap_threshold", overlap_threshold, minimum=0, maximum=1, exclusive_minimum=True, owner=owner)
        check_number("negative_mining_thresh", negative_mining_thresh, minimum=0, maximum=1, owner=owner)
        check_number("negative_mining_ratio", negative_mining_ratio, owner=owner)
        if not (negative_mining_ratio == -1 or negative_mining_ratio >= 0):
            raise InputError(
                f"The 'negative_mining_ratio' argument of {owner} must be -1 (no mining) or >= 0; "
                f"got {negative_mining_ratio!r} instead."
            )
        check_int("minimum_negative_samples", minimum_negative_samples, minimum=0, owner=owner)
        self.variances = check_variances(variances)
        self.overlap_threshold = float(overlap_threshold)
        self.negative_mining_ratio = float(negative_mining_ratio)
        self.negative_mining_thresh = float(negative_mining_thresh)
        self.minimum_negative_samples = int(minimum_negative_samples)

    def hybrid_forward(self, F: Any, anchors: Any, labels: Any, class_preds: Any) -> tuple[Any, Any, Any]:
        scores = F.BlockGrad(class_preds).transpose(axes=(0, 2, 1))  # (B, C+1, N)
        box_targets, box_mask, class_targets = F.contrib.MultiBoxTarget(
            anchors,
            labels,
            scores,
            overlap_threshold=self.overlap_threshold,
            ignore_label=-1,
            negative_mining_ratio=self.negative_mining_ratio,
            negative_mining_thresh=self.negative_mining_thresh,
            minimum_negative_samples=self.minimum_negative_samples,
            variances=self.variances,
        )
        if self.negative_mining_ratio <= 0:
            # Without mining, MultiBoxTarget marks -1 only the anchors of images that have
            # no object at all; such an image teaches "background everywhere" (as the seed's
            # clipping `pick` made it), so those anchors become background, not ignored.
            class_targets = F.maximum(class_targets, 0)
        return box_targets, box_mask, class_targets
