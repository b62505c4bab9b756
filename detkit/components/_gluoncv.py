"""GluonCV's SSD anchors and its decoding with per-class NMS, as detkit components.

GluonCV's SSD (``gluoncv.model_zoo.ssd``) places its anchors in pixels of the
image it was designed for, with explicit steps between anchor centres, and
decodes with ``NormalizedBoxCenterDecoder`` and ``MultiPerClassDecoder`` before
one ``box_nms`` over every class. :class:`GluonCVAnchors` and
:class:`GluonCVDecoder` reproduce both in detkit's normalised coordinates, so
that a detector with a GluonCV SSD's weights (see :func:`detkit.import_gluoncv`)
returns GluonCV's detections divided by the image size.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .._base import check_bool, check_count, check_number, check_size
from ..errors import InputError
from ..interfaces import AnchorGenerator, PostProcessor
from ._targets import DEFAULT_VARIANCES, check_variances

def _numbers(argument: str, value: Any, owner: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value):
        raise InputError(f"The '{argument}' argument of {owner} must be a non-empty list of positive numbers; "
                         f"got {value!r} instead.")
    return [float(v) for v in value]


class GluonCVAnchors(AnchorGenerator):
    """The anchors of GluonCV's ``SSDAnchorGenerator``, normalised by the input size.

    On scale ``i`` with the feature map ``(h_i, w_i)``, the anchors of the
    position ``(y, x)`` are centred on ``((x + offsets[1]) * steps[i], (y + offsets[0]) * steps[i])``
    pixels, and are, in this order: a square of side ``sizes[i]``, a square of
    side ``sqrt(sizes[i] * sizes[i + 1])``, then for each ratio ``r`` of
    ``ratios[i][1:]`` a box ``sizes[i] * sqrt(r)`` wide and ``sizes[i] / sqrt(r)``
    high (all in pixels): ``len(ratios[i]) + 1`` anchors a position. Each is
    divided by ``image_size`` (the input's ``(H, W)``) to give detkit's
    normalised corners: exactly GluonCV's anchors for an input of ``image_size``.

    Parameters
    ----------
    sizes : sequence of float
        GluonCV's ``sizes``: one more than the scales, in pixels, increasing
        (``ssd_512_resnet50_v1_voc``: 51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492).
    ratios : sequence of sequence of float
        Aspect ratios (width / height) per scale, the first of each list 1
        (GluonCV's first ratio only names the two squares).
    steps : sequence of float
        The distance between anchor centres per scale, in pixels.
    image_size : int or (int, int)
        The input ``(H, W)`` in pixels that the sizes and steps are relative to:
        the detector's ``data_shape``.
    offsets : (float, float), default (0.5, 0.5)
        The centre of the first anchor, ``(y, x)``, in steps.
    clip : bool, default False
        Clip each anchor's centre and size (not its corners) to the image, as
        GluonCV's ``clip=True`` does; its SSDs do not clip.

    Examples
    --------
    >>> import mxnet as mx
    >>> from detkit.components import GluonCVAnchors
    >>> anchors = GluonCVAnchors(sizes=[30, 60, 90], ratios=[[1, 2], [1, 2]], steps=[8, 16], image_size=32)
    >>> anchors.num_anchors
    (3, 3)
    >>> anchors(mx.nd.zeros((1, 4, 4, 4)), mx.nd.zeros((1, 4, 2, 2))).shape
    (1, 60, 4)
    """

    def __init__(
        self,
        sizes: Sequence[float],
        ratios: Sequence[Sequence[float]],
        steps: Sequence[float],
        image_size: int | Sequence[int],
        offsets: Sequence[float] = (0.5, 0.5),
        clip: bool = False,
    ) -> None:
        super().__init__()
        owner = "GluonCVAnchors"
        self.sizes = _numbers("sizes", sizes, owner)
        self.steps = _numbers("steps", steps, owner)
        if not isinstance(ratios, (list, tuple)) or not all(isinstance(r, (list, tuple)) for r in ratios):
            raise InputError(f"The 'ratios' argument of {owner} must be one list of ratios per scale; "
                             f"got {ratios!r} instead.")
        self.ratios = [_numbers(f"ratios[{i}]", r, owner) for i, r in enumerate(ratios)]
        if not (len(self.sizes) == len(self.steps) + 1 == len(self.ratios) + 1):
            raise InputError(
                f"{owner} needs one step and one list of ratios per scale and one size more than the scales; "
                f"got {len(self.sizes)} sizes, {len(self.steps)} steps and {len(self.ratios)} lists of ratios."
            )
        self.image_size = list(check_size("image_size", image_size, owner=owner))
        given = list(offsets) if isinstance(offsets, (list, tuple)) else None
        if given is None or len(given) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in given):
            raise InputError(f"The 'offsets' argument of {owner} must be two numbers in [0, 1]; "
                             f"got {offsets!r} instead.")
        self.offsets = [float(v) for v in given]
        self.clip = check_bool("clip", clip, owner=owner)

    @property
    def num_anchors(self) -> Sequence[int]:
        return tuple(len(r) + 1 for r in self.ratios)

    def _shapes(self, scale: int) -> list[tuple[float, float]]:
        """``(width, height)`` of each anchor of a position on ``scale``, normalised."""
        height, width = self.image_size
        small = self.sizes[scale]
        large = math.sqrt(self.sizes[scale] * self.sizes[scale + 1])
        boxes = [(small, small), (large, large)]
        boxes += [(small * math.sqrt(r), small / math.sqrt(r)) for r in self.ratios[scale][1:]]
        shapes = [(w / width, h / height) for w, h in boxes]
        if self.clip:
            shapes = [(min(w, 1.0), min(h, 1.0)) for w, h in shapes]
        return shapes

    def hybrid_forward(self, F: Any, *feature_maps: Any) -> Any:
        height, width = self.image_size
        anchors = []
        for scale, feature_map in enumerate(feature_maps):
            step = self.steps[scale]
            ys = (F.contrib.arange_like(feature_map, axis=2) + self.offsets[0]) * (step / height)  # (h,)
            xs = (F.contrib.arange_like(feature_map, axis=3) + self.offsets[1]) * (step / width)  # (w,)
            cy = F.broadcast_add(ys.reshape((-1, 1)), F.zeros_like(xs).reshape((1, -1)))  # (h, w)
            cx = F.broadcast_add(F.zeros_like(ys).reshape((-1, 1)), xs.reshape((1, -1)))  # (h, w)
            if self.clip:
                cy, cx = F.clip(cy, 0, 1), F.clip(cx, 0, 1)
            boxes = [F.stack(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, axis=-1)  # (h, w, 4)
                     for w, h in self._shapes(scale)]
            anchors.append(F.stack(*boxes, axis=2).reshape((1, -1, 4)))  # (1, h * w * A, 4)
        return F.concat(*anchors, dim=1)  # (1, N, 4)


class GluonCVDecoder(PostProcessor):
    """GluonCV's SSD decoding: centre-offset decoding, per-class scores, one ``box_nms`` over every class.

    As ``gluoncv.model_zoo.ssd.SSD`` at inference: the offsets are decoded by
    ``NormalizedBoxCenterDecoder`` (``cx = ax + tx * v0 * aw``, ...,
    ``w = aw * exp(tw * v2)``); the class scores are the softmax; every
    ``(anchor, class)`` pair scoring above ``score_threshold`` is a candidate
    (``MultiPerClassDecoder``); ``box_nms`` then keeps the ``nms_topk`` best
    candidates and suppresses, within each class, boxes overlapping a better
    one by more than ``nms_threshold``, and the first ``post_nms`` rows are
    returned. Unlike ``multibox_detection``, an anchor may give one detection
    per class.

    Parameters
    ----------
    nms_threshold : float, default 0.45
        GluonCV's ``nms_thresh``; outside ``(0, 1)`` no suppression happens (and
        ``post_nms`` is not applied), as in GluonCV.
    nms_topk : int, default 400
        Candidates kept, best first, before suppression; ``-1`` keeps all.
    post_nms : int, default 100
        Detections returned per image (``K``); ``-1`` returns every candidate.
    score_threshold : float, default 0.01
        Class scores at or below this are no candidates (GluonCV's fixed 0.01).
    clip : bool, default True
        Clip the boxes to the image after suppression and drop those left without
        area, as the :class:`~detkit.interfaces.PostProcessor` contract asks;
        ``False`` returns GluonCV's unclipped boxes (its SSDs do not clip).
    variances : sequence of 4 floats, default (0.1, 0.1, 0.2, 0.2)
        GluonCV's ``stds``; must equal the target assigner's.

    Examples
    --------
    >>> import mxnet as mx
    >>> from detkit.components import GluonCVDecoder
    >>> decoder = GluonCVDecoder(post_nms=5)
    >>> decoder.initialize()
    >>> anchors = mx.nd.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]]])     # (1, N=2, 4)
    >>> class_preds = mx.nd.array([[[0, 5, 0], [0, 0, 5]]])                          # (1, 2, C+1=3)
    >>> detections = decoder(class_preds, mx.nd.zeros((1, 8)), anchors)
    >>> detections.shape
    (1, 5, 6)
    >>> [[int(c), round(float(s), 3)] for c, s in detections[0, :2, :2].asnumpy()]   # class id, score
    [[0, 0.987], [1, 0.987]]
    """

    def __init__(
        self,
        nms_threshold: float = 0.45,
        nms_topk: int = 400,
        post_nms: int = 100,
        score_threshold: float = 0.01,
        clip: bool = True,
        variances: Sequence[float] = DEFAULT_VARIANCES,
    ) -> None:
        super().__init__()
        owner = "GluonCVDecoder"
        self.nms_threshold = check_number("nms_threshold", nms_threshold, owner=owner)
        self.score_threshold = check_number("score_threshold", score_threshold, minimum=0, maximum=1, owner=owner)
        self.nms_topk = check_count("nms_topk", nms_topk, owner=owner)
        self.post_nms = check_count("post_nms", post_nms, owner=owner)
        self.clip = check_bool("clip", clip, owner=owner)
        self.variances = check_variances(variances)

    def hybrid_forward(self, F: Any, class_preds: Any, box_preds: Any, anchors: Any) -> Any:
        v0, v1, v2, v3 = self.variances
        # Anchors as centre and size (GluonCV's BBoxCornerToCenter): each (1, N, 1).
        xmin, ymin, xmax, ymax = F.split(anchors, axis=-1, num_outputs=4)
        aw, ah = xmax - xmin, ymax - ymin
        ax, ay = xmin + aw * 0.5, ymin + ah * 0.5
        tx, ty, tw, th = F.split(box_preds.reshape((0, -1, 4)), axis=-1, num_outputs=4)  # each (B, N, 1)
        ox = F.broadcast_add(F.broadcast_mul(tx * v0, aw), ax)
        oy = F.broadcast_add(F.broadcast_mul(ty * v1, ah), ay)
        ow = F.broadcast_mul(F.exp(tw * v2), aw) * 0.5
        oh = F.broadcast_mul(F.exp(th * v3), ah) * 0.5
        boxes = F.concat(ox - ow, oy - oh, ox + ow, oy + oh, dim=-1)  # (B, N, 4)
        scores = F.softmax(class_preds, axis=-1).slice_axis(axis=-1, begin=1, end=None)  # (B, N, C)
        ids = F.broadcast_like(F.contrib.arange_like(scores, axis=-1).reshape((1, 1, -1)), scores)  # (B, N, C)
        keep = scores > self.score_threshold
        ids = F.where(keep, ids, F.ones_like(ids) * -1)
        scores = F.where(keep, scores, F.zeros_like(scores))
        # Class by class, every anchor (GluonCV's concatenation order): (B, C, N, 6), then (B, C * N, 6).
        ids = F.expand_dims(F.transpose(ids, axes=(0, 2, 1)), axis=-1)  # (B, C, N, 1)
        scores = F.expand_dims(F.transpose(scores, axes=(0, 2, 1)), axis=-1)  # (B, C, N, 1)
        boxes = F.broadcast_like(F.expand_dims(boxes, axis=1), ids, lhs_axes=(1,), rhs_axes=(1,))  # (B, C, N, 4)
        result = F.concat(ids, scores, boxes, dim=-1).reshape((0, -3, 6))  # (B, C * N, 6)
        if 0 < self.nms_threshold < 1:
            result = F.contrib.box_nms(
                result, overlap_thresh=self.nms_threshold, topk=self.nms_topk, valid_thresh=self.score_threshold,
                id_index=0, score_index=1, coord_start=2, force_suppress=False)
            if self.post_nms > 0:
                # Padded with empty rows first, so that fewer candidates than post_nms still give K rows.
                empty = F.broadcast_axis(F.ones_like(result.slice_axis(axis=1, begin=0, end=1)) * -1, axis=1,
                                         size=self.post_nms)  # (B, post_nms, 6)
                result = F.concat(result, empty, dim=1).slice_axis(axis=1, begin=0, end=self.post_nms)  # (B, K, 6)
        if self.clip:  # after suppression, which so stays GluonCV's
            ids, scores = result.slice_axis(axis=-1, begin=0, end=1), result.slice_axis(axis=-1, begin=1, end=2)
            boxes = F.clip(result.slice_axis(axis=-1, begin=2, end=6), 0, 1)  # (B, K, 4)
            x0, y0, x1, y1 = F.split(boxes, axis=-1, num_outputs=4)  # each (B, K, 1)
            area = (x1 > x0) * (y1 > y0)  # a box clipping leaves without area is no detection
            ids = F.where(area, ids, F.ones_like(ids) * -1)
            result = F.concat(ids, scores, boxes, dim=-1)  # (B, K, 6)
        return result
