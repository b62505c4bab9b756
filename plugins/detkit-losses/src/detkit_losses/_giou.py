"""A generalized-IoU box loss, computed from encoded offsets without the anchors."""

from __future__ import annotations

import math
from typing import Any, Sequence

from detkit.errors import InputError
from detkit.interfaces import Loss

from ._mining import SSD_NEGATIVE_RATIO, check_mining_arguments, mined_cross_entropy

#: MultiBoxTarget's and MultiBoxDetection's default variances (detkit's ``DEFAULT_VARIANCES``).
DEFAULT_VARIANCES = (0.1, 0.1, 0.2, 0.2)
#: Largest decoded log-scale of a box side, log(1000 / 16), as torchvision's box coder
#: clips it: keeps exp() finite for wild early predictions.
_LOG_SCALE_CLIP = math.log(1000.0 / 16)


class GIoULoss(Loss):
    """Softmax cross-entropy with hard-negative mining plus ``1 - GIoU`` of the boxes.

    Per sample, ``L = (L_conf + box_weight * L_giou) / max(N, 1)``: ``L_conf``
    is :class:`SSDMultiBoxLoss`'s mined cross-entropy, and ``L_giou`` sums
    ``1 - GIoU(predicted box, target box)`` over the positive anchors (where
    ``box_mask`` is 1), with the generalized IoU of Rezatofighi et al.,
    "Generalized Intersection over Union" (CVPR 2019):
    ``GIoU = IoU - (|C| - |A u B|) / |C|``, ``C`` the smallest box enclosing both.
    ``1 - GIoU`` lies in ``[0, 2]``; it is 0 for a perfect box.

    How boxes are compared without anchors
        The :class:`~detkit.interfaces.Loss` interface receives the encoded
        offsets ``t`` of the target assigner, not the anchors. Both the
        predicted and the target offsets are relative to the same anchor, so
        both are decoded relative to a *unit anchor* (centre 0, width and height 1):
        centre ``(t_x * v_0, t_y * v_1)``, size ``(exp(t_w * v_2), exp(t_h * v_3))``.
        This is the image of the true boxes under ``x -> (x - a_x) / a_w``,
        ``y -> (y - a_y) / a_h``, a translation and an axis-wise scaling that
        multiplies every area by the same factor, so IoU and GIoU, ratios of
        areas, are exactly those of the decoded boxes in the image. (DIoU and
        CIoU, which compare distances, are not invariant under an anisotropic
        scaling and would need the anchors.)

    Terms: ``("cross_entropy", "giou")``, each divided by ``max(N, 1)``.

    Parameters
    ----------
    negative_ratio : float, default 3
        Negatives kept per positive by hard-negative mining (the SSD paper's 3:1).
    box_weight : float, default 1
        Weight of the GIoU term.
    variances : sequence of 4 floats, default (0.1, 0.1, 0.2, 0.2)
        The target assigner's encoding variances (``MultiBoxTarget``'s defaults).
    min_negatives : int, default 0
        Negatives kept per sample at least, also in a sample without positives.
    """

    def __init__(self, negative_ratio: float = SSD_NEGATIVE_RATIO, box_weight: float = 1.0,
                 variances: Sequence[float] = DEFAULT_VARIANCES, min_negatives: int = 0) -> None:
        super().__init__()
        check_mining_arguments("GIoULoss", negative_ratio, min_negatives)
        if isinstance(box_weight, bool) or not isinstance(box_weight, (int, float)) or not box_weight >= 0:
            raise InputError(f"The 'box_weight' argument of GIoULoss must be >= 0; got {box_weight!r} instead.")
        if (
            not isinstance(variances, (list, tuple))
            or len(variances) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in variances)
        ):
            raise InputError(
                f"The 'variances' argument of GIoULoss must be 4 positive numbers; got {variances!r} instead."
            )
        self.negative_ratio = float(negative_ratio)
        self.box_weight = float(box_weight)
        self.variances = [float(v) for v in variances]
        self.min_negatives = int(min_negatives)

    @property
    def term_names(self) -> Sequence[str]:
        return ("cross_entropy", "giou")

    def _decode(self, F: Any, offsets: Any) -> tuple[Any, Any, Any, Any]:
        """Corners ``(x1, y1, x2, y2)``, each ``(B, N)``, of ``(B, N*4)`` offsets decoded on a unit anchor."""
        t = F.reshape(offsets, (0, -1, 4))  # (B, N, 4)
        v0, v1, v2, v3 = self.variances
        centre_x = F.slice_axis(t, axis=-1, begin=0, end=1) * v0
        centre_y = F.slice_axis(t, axis=-1, begin=1, end=2) * v1
        half_w = F.exp(F.clip(F.slice_axis(t, axis=-1, begin=2, end=3) * v2, -_LOG_SCALE_CLIP, _LOG_SCALE_CLIP)) / 2
        half_h = F.exp(F.clip(F.slice_axis(t, axis=-1, begin=3, end=4) * v3, -_LOG_SCALE_CLIP, _LOG_SCALE_CLIP)) / 2
        corners = (centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h)
        return tuple(F.reshape(c, (0, -1)) for c in corners)  # each (B, N)

    def hybrid_forward(
        self, F: Any, class_preds: Any, box_preds: Any, class_targets: Any, box_targets: Any, box_mask: Any
    ) -> tuple[Any, Any, Any]:
        cross_entropy, positives = mined_cross_entropy(
            F, class_preds, class_targets, self.negative_ratio, self.min_negatives)  # (B,), (B,)
        px1, py1, px2, py2 = self._decode(F, box_preds)
        tx1, ty1, tx2, ty2 = self._decode(F, F.BlockGrad(box_targets))
        area_p = (px2 - px1) * (py2 - py1)  # (B, N), > 0
        area_t = (tx2 - tx1) * (ty2 - ty1)
        inter_w = F.relu(F.minimum(px2, tx2) - F.maximum(px1, tx1))
        inter_h = F.relu(F.minimum(py2, ty2) - F.maximum(py1, ty1))
        intersection = inter_w * inter_h
        union = area_p + area_t - intersection  # >= max(area_p, area_t) > 0
        enclosing = (F.maximum(px2, tx2) - F.minimum(px1, tx1)) * (F.maximum(py2, ty2) - F.minimum(py1, ty1))
        giou = intersection / union - (enclosing - union) / enclosing  # (B, N), in (-1, 1]
        positive = F.max(F.reshape(box_mask, (0, -1, 4)), axis=-1)  # (B, N): 1 where the box counts
        box = F.sum((1 - giou) * positive, axis=1)  # (B,)
        normaliser = F.maximum(positives, 1)  # (B,)
        cross_entropy = cross_entropy / normaliser
        box = box / normaliser
        return cross_entropy + self.box_weight * box, cross_entropy, box
