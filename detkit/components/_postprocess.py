"""Detections by softmax and ``MultiBoxDetection`` (decoding and non-maximum suppression)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._base import OnnxNodes, check_bool, check_count, check_number
from ..interfaces import OnnxSubgraph, PostProcessor
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
        topk = check_count("nms_topk", nms_topk, owner="MultiBoxDetectionPostProcessor", minus_one="keep all")
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

    def export_onnx(self, class_preds: str, box_preds: str, anchors: str, detections: str, *,
                    opset: int) -> OnnxSubgraph:
        """``MultiBoxDetection`` as standard ONNX operators (``TopK``, ``NonMaxSuppression``, ``Gather``).

        The same steps in the same order: softmax; each anchor's best object class
        (the first on a tie) and its probability; boxes decoded with :attr:`variances`
        ; anchors scoring below
        :attr:`score_threshold` dropped; the :attr:`nms_topk` best kept (ties: the
        lower anchor index first); non-maximum suppression across classes
        (:attr:`force_suppress`) or within each. The output has ``K = min(nms_topk, N)``
        rows: the kept detections, highest score first, then rows of ``-1``; with
        :attr:`clip`, boxes are clipped to [0, 1] after suppression and a box left
        without area is no detection, as in :meth:`hybrid_forward`.
        MXNet suppresses a box whose IoU equals :attr:`nms_threshold`, ONNX only
        above it: boxes at exactly the threshold may differ.
        """
        g = OnnxNodes(self.prefix)
        int64 = np.int64
        probabilities = g.op("Softmax", [class_preds], axis=-1)  # (B, N, C+1)
        objects = g.op("Slice", [probabilities, g.const([1], int64), g.const([2 ** 62], int64),
                                 g.const([2], int64)])  # (B, N, C): no background
        best = g.op("ArgMax", [objects], axis=2, keepdims=1, select_last_index=0)  # (B, N, 1), first on a tie
        scores = g.op("Reshape", [g.op("GatherElements", [objects, best], axis=2), g.const([0, -1], int64)])  # (B, N)
        class_ids = g.op("Cast", [g.op("Reshape", [best, g.const([0, -1], int64)])], to=1)  # (B, N) float

        # Decoding, in MultiBoxDetection's order of operations: (B, N, 2) centres and half sizes.
        offsets = g.op("Reshape", [box_preds, g.const([0, -1, 4], int64)])  # (B, N, 4)
        p_xy, p_wh = g.op("Split", [offsets, g.const([2, 2], int64)], outputs=2, axis=2)
        a_min, a_max = g.op("Split", [anchors, g.const([2, 2], int64)], outputs=2, axis=2)  # (1, N, 2)
        a_wh = g.op("Sub", [a_max, a_min])
        a_xy = g.op("Div", [g.op("Add", [a_min, a_max]), g.const(2.0)])
        v_xy, v_wh = g.const(self.variances[:2]), g.const(self.variances[2:])
        centre = g.op("Add", [g.op("Mul", [g.op("Mul", [p_xy, v_xy]), a_wh]), a_xy])
        half = g.op("Div", [g.op("Mul", [g.op("Exp", [g.op("Mul", [p_wh, v_wh])]), a_wh]), g.const(2.0)])
        boxes = g.op("Concat", [g.op("Sub", [centre, half]), g.op("Add", [centre, half])], axis=2)  # (B, N, 4)

        # Anchors below the score threshold: -1, below every real score.
        kept = g.op("GreaterOrEqual", [scores, g.const(self.score_threshold)])
        ranked = g.op("Where", [kept, scores, g.const(-1.0)])  # (B, N)
        count = g.op("Gather", [g.op("Shape", [ranked]), g.const([1], int64)])  # [N]
        if self.nms_topk > 0:
            count = g.op("Min", [count, g.const([self.nms_topk], int64)])  # [K]
        top_scores, top_index = g.op("TopK", [ranked, count], outputs=2, axis=1, largest=1, sorted=1)  # (B, K)
        top_ids = g.op("GatherElements", [class_ids, top_index], axis=1)  # (B, K)
        index_4 = g.op("Expand", [g.op("Unsqueeze", [top_index, g.const([2], int64)]),
                                  g.op("Concat", [g.op("Shape", [top_index]), g.const([4], int64)], axis=0)])
        top_boxes = g.op("GatherElements", [boxes, index_4], axis=1)  # (B, K, 4)

        # Non-maximum suppression: one class for all boxes, or each box scored only in its own class.
        if self.force_suppress:
            nms_scores = g.op("Unsqueeze", [top_scores, g.const([1], int64)])  # (B, 1, K)
        else:
            num_classes = g.op("Sub", [g.op("Gather", [g.op("Shape", [class_preds]), g.const([2], int64)]),
                                       g.const([1], int64)])  # [C]
            classes = g.op("Cast", [g.op("Range", [g.const(0, int64), g.op("Squeeze", [num_classes]),
                                                   g.const(1, int64)])], to=1)  # (C,)
            same = g.op("Equal", [g.op("Unsqueeze", [top_ids, g.const([1], int64)]),
                                  g.op("Unsqueeze", [classes, g.const([0, 2], int64)])])  # (B, C, K)
            nms_scores = g.op("Where", [same, g.op("Unsqueeze", [top_scores, g.const([1], int64)]), g.const(-1.0)])
        # MXNet skips suppression for a threshold outside (0, 1]; an IoU never exceeds 1.
        iou = self.nms_threshold if 0 < self.nms_threshold <= 1 else 1.0
        selected = g.op("NonMaxSuppression", [top_boxes, nms_scores, count, g.const([iou]), g.const([-0.5])],
                        center_point_box=0)  # (S, 3): batch, class, box
        where = g.op("Gather", [selected, g.const([0, 2], int64)], axis=1)  # (S, 2)
        ones = g.op("ConstantOfShape", [g.op("Gather", [g.op("Shape", [selected]), g.const([0], int64)])],
                    value=g.onnx.helper.make_tensor("one", 1, [1], [1.0]))
        keep = g.op("ScatterND", [g.op("ConstantOfShape", [g.op("Shape", [top_scores])],
                                       value=g.onnx.helper.make_tensor("zero", 1, [1], [0.0])), where, ones])

        if self.clip:  # after suppression, as hybrid_forward: clipped, and a box left without area dropped
            finite = g.op("Equal", [g.op("Sub", [top_boxes, top_boxes]), g.const(0.0)])  # NaN/inf stay as they are
            top_boxes = g.op("Where", [finite, g.op("Clip", [top_boxes, g.const(0.0), g.const(1.0)]), top_boxes])
            low, high = g.op("Split", [top_boxes, g.const([2, 2], int64)], outputs=2, axis=2)  # (B, K, 2) each
            flat = g.op("Cast", [g.op("LessOrEqual", [high, low])], to=1)  # (B, K, 2): 1 where no width/height
            has_area = g.op("Sub", [g.const(1.0), g.op("ReduceMax", [flat], axes=[2], keepdims=0)])  # (B, K)
            keep = g.op("Mul", [keep, has_area])

        # The kept rows first, in score order, then rows of -1.
        rows = g.op("Concat", [g.op("Unsqueeze", [top_ids, g.const([2], int64)]),
                               g.op("Unsqueeze", [top_scores, g.const([2], int64)]), top_boxes], axis=2)  # (B, K, 6)
        kept_rows = g.op("Greater", [g.op("Unsqueeze", [keep, g.const([2], int64)]), g.const(0.5)])
        rows = g.op("Where", [kept_rows, rows, g.const(-1.0)])
        position = g.op("Cast", [g.op("Range", [g.const(0, int64), g.op("Squeeze", [count]), g.const(1, int64)])],
                        to=1)  # (K,)
        later = g.op("Mul", [g.op("Sub", [g.const(1.0), keep]), g.op("Cast", [count], to=1)])
        _, order = g.op("TopK", [g.op("Add", [position, later]), count], outputs=2, axis=1, largest=0, sorted=1)
        index_6 = g.op("Expand", [g.op("Unsqueeze", [order, g.const([2], int64)]),
                                  g.op("Concat", [g.op("Shape", [order]), g.const([6], int64)], axis=0)])
        g.op("GatherElements", [rows, index_6], outputs=[detections], axis=1)  # (B, K, 6)
        return OnnxSubgraph(g.nodes, g.initializers)
