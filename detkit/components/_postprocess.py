"""Detections by softmax and ``MultiBoxDetection`` (decoding and non-maximum suppression)."""

from __future__ import annotations

import operator
from typing import Any, Sequence

from .._base import check_bool, check_number
from ..errors import InputError
from ..interfaces import PostProcessor
from ._targets import DEFAULT_VARIANCES, check_variances


class MultiBoxDetectionPostProcessor(PostProcessor):
    """Softmax over classes, decode the offsets, then non-maximum suppression.

    Parameters
    ----------
    nms_threshold : float, default 0.5
        Of two boxes with an IoU above this, only the higher-scoring one is kept.
    score_threshold : float, default 0.01
        Anchors whose best object probability is below this are dropped.
    force_suppress : bool, default True
        Suppress overlapping boxes whatever their classes (the seed), not only within a class.
    clip : bool, default True
        Clip boxes to the image after non-maximum suppression, as the
        :class:`~detkit.interfaces.PostProcessor` contract asks, and drop the boxes
        that clipping leaves without area (wholly outside the image); a NaN or
        infinite corner is left as it is, so that a diverged network shows. ``False`` is the seed's recipe (the ``"seed"`` preset):
        boxes may then reach past the image's edges.
    nms_topk : int, default 400
        Keep at most this many of an image's highest-scoring boxes before NMS; ``-1`` keeps
        all (the seed). NMS compares every pair of boxes it keeps, and an untrained or
        uncertain model scores thousands of anchors above ``score_threshold``: 400 (SSD's
        and GluonCV's choice) makes post-processing several times faster and leaves the
        few boxes a trained model is confident about unchanged.
    variances : sequence of 4 floats, default (0.1, 0.1, 0.2, 0.2)
        Must equal the target assigner's.
    """

    def __init__(
        self,
        nms_threshold: float = 0.5,
        score_threshold: float = 0.01,
        force_suppress: bool = True,
        clip: bool = True,
        nms_topk: int = 400,
        variances: Sequence[float] = DEFAULT_VARIANCES,
    ) -> None:
        super().__init__()
        for name, value in (("nms_threshold", nms_threshold), ("score_threshold", score_threshold)):
            check_number(name, value, minimum=0, maximum=1, owner="MultiBoxDetectionPostProcessor")
        for name, value in (("force_suppress", force_suppress), ("clip", clip)):
            check_bool(name, value, owner="MultiBoxDetectionPostProcessor")
        try:
            topk: int | None = None if isinstance(nms_topk, bool) else operator.index(nms_topk)  # numpy ints too
        except TypeError:
            topk = None
        if topk is None or not (topk == -1 or topk > 0):
            raise InputError(
                f"The 'nms_topk' argument of MultiBoxDetectionPostProcessor must be a positive int or -1 (keep "
                f"all); got {nms_topk!r} instead."
            )
        self.variances = check_variances(variances)
        self.nms_threshold = float(nms_threshold)
        self.score_threshold = float(score_threshold)
        self.force_suppress = bool(force_suppress)
        self.clip = bool(clip)
        self.nms_topk = topk

    def hybrid_forward(self, F: Any, class_preds: Any, box_preds: Any, anchors: Any) -> Any:
        probabilities = F.softmax(class_preds, axis=-1).transpose(axes=(0, 2, 1))  # (B, C+1, N)
        detections = F.contrib.MultiBoxDetection(
            probabilities,
            box_preds,
            anchors,
            clip=False,  # clipped below, after NMS, so that an overflowing network still shows as non-finite
            threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
            force_suppress=self.force_suppress,
            nms_topk=self.nms_topk,
            variances=self.variances,
        )  # (B, N, 6)
        if not self.clip:
            return detections
        ids = detections.slice_axis(axis=-1, begin=0, end=1)
        scores = detections.slice_axis(axis=-1, begin=1, end=2)
        boxes = detections.slice_axis(axis=-1, begin=2, end=6)
        # Clipped to the image; a NaN or infinite corner stays as it is (evaluation reports divergence).
        finite = (boxes - boxes) == 0
        boxes = F.where(finite, F.clip(boxes, 0.0, 1.0), boxes)
        # A box clipped to nothing (wholly outside the image) is no detection: its class id becomes -1.
        xmin, ymin, xmax, ymax = (boxes.slice_axis(axis=-1, begin=i, end=i + 1) for i in range(4))
        degenerate = ((xmax <= xmin) + (ymax <= ymin)) > 0
        ids = F.where(degenerate, F.ones_like(ids) * -1, ids)
        return F.concat(ids, scores, boxes, dim=-1)
