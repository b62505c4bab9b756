"""detkit-losses: conformance, discovery, and both losses pinned against numpy references."""

from __future__ import annotations

from importlib import metadata

import pytest

# These tests run against the installed package: `pip install ./plugins/detkit-losses`.
pytest.importorskip("detkit_losses", reason="the plugin is not installed: pip install ./plugins/detkit-losses")

import detkit_losses
import mxnet as mx
import numpy as np
from detkit_losses import GIoULoss, SSDMultiBoxLoss

import detkit
from detkit.errors import InputError
from detkit.testing import parametrize_with_checks

VARIANCES = np.array([0.1, 0.1, 0.2, 0.2])


@parametrize_with_checks([
    SSDMultiBoxLoss(),
    SSDMultiBoxLoss(negative_ratio=1.0, box_weight=2.0, sigma=3.0, min_negatives=2),
    GIoULoss(),
    GIoULoss(box_weight=2.0, min_negatives=1),
])
def test_detkit_conformance(component, check) -> None:
    check(component)


def test_the_installed_distribution_is_discovered() -> None:
    distribution = metadata.distribution("gluon-detkit-losses")  # pip install ./plugins/detkit-losses
    (plugin,) = [p for p in detkit.list_plugins() if p.name == "losses"]
    assert (plugin.status, plugin.distribution, plugin.version) == ("active", "gluon-detkit-losses", distribution.version)
    assert plugin.components == {"loss": ["ssd_multibox", "giou"]}
    assert plugin.api == detkit_losses.DETKIT_PLUGIN_API


@pytest.mark.parametrize(("name", "cls"), [("ssd_multibox", SSDMultiBoxLoss), ("giou", GIoULoss)])
def test_each_loss_replaces_the_default_by_name(name, cls) -> None:
    detector = detkit.SSDDetector(classes=["pikachu"], loss=name, ctx=mx.cpu())
    assert isinstance(detector.loss, cls)
    images = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    labels = mx.nd.array([[[0, 0.1, 0.1, 0.5, 0.6]], [[-1, -1, -1, -1, -1]]])
    with mx.autograd.record():
        anchors, class_preds, box_preds = detector.network(images)
        box_targets, box_mask, class_targets = detector.target_assigner(anchors, labels, class_preds)
        loss, *terms = detector.loss(class_preds, box_preds, class_targets, box_targets, box_mask)
    loss.backward()
    assert loss.shape == (2,) and loss[0].asscalar() > 0
    assert loss[1].asscalar() == 0  # an image without objects: no positive, so no mined negative either
    assert len(terms) == 2


# -- SSDMultiBoxLoss against a numpy reference -----------------------------------------------------


def _softmax_ce(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(log_p, np.maximum(targets, 0).astype(int)[..., None], axis=-1)[..., 0]


def _smooth_l1(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.where(np.abs(x) < 1 / sigma ** 2, 0.5 * (sigma * x) ** 2, np.abs(x) - 0.5 / sigma ** 2)


def _reference_ssd(class_preds, box_preds, class_targets, box_targets, box_mask, ratio=3.0, weight=1.0,
                   sigma=1.0, min_negatives=0):
    """The SSD paper's loss, one sample at a time, mining by sorting."""
    totals, confs, locs = [], [], []
    for b in range(class_preds.shape[0]):
        ce = _softmax_ce(class_preds[b], class_targets[b])
        positive = class_targets[b] > 0
        negatives = np.flatnonzero(class_targets[b] == 0)
        keep = int(min(len(negatives), max(ratio * positive.sum(), min_negatives)))
        hardest = negatives[np.argsort(-ce[negatives], kind="stable")[:keep]]
        n = max(positive.sum(), 1)
        conf = (ce[positive].sum() + ce[hardest].sum()) / n
        loc = _smooth_l1((box_preds[b] - box_targets[b]) * box_mask[b], sigma).sum() / n
        totals.append(conf + weight * loc)
        confs.append(conf)
        locs.append(loc)
    return np.array(totals), np.array(confs), np.array(locs)


def _run(loss, *arrays):
    return [out.asnumpy() for out in loss(*[mx.nd.array(a) for a in arrays])]


def test_ssd_loss_by_hand() -> None:
    # One positive (anchor 0), four negatives, one ignored anchor; 3:1 mining keeps the 3 hardest negatives.
    class_preds = np.array([[[0.0, 2.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 9.0]]])
    class_targets = np.array([[1, 0, 0, 0, 0, -1]], dtype="float32")
    box_targets = np.zeros((1, 24))
    box_preds = np.zeros((1, 24))
    box_preds[0, 0] = 0.5
    box_preds[0, 8] = 7.0  # anchor 2 is no positive: its box does not count
    box_mask = np.zeros((1, 24))
    box_mask[0, :4] = 1
    total, conf, loc = _run(SSDMultiBoxLoss(), class_preds, box_preds, class_targets, box_targets, box_mask)
    ce = lambda logits, j: np.log(np.exp(logits).sum()) - logits[j]  # noqa: E731
    # Negatives' cross-entropy: anchor 1 ln 2, anchor 2 ln(1+e^-1), anchor 3 ln(1+e), anchor 4 ln(1+e^-3):
    # the three hardest are anchors 3, 1, 2.
    expected_conf = ce(np.array([0.0, 2.0]), 1) + ce(np.array([0.0, 1.0]), 0) + np.log(2) + ce(np.array([1.0, 0.0]), 0)
    np.testing.assert_allclose(conf, [expected_conf], rtol=1e-5)
    np.testing.assert_allclose(loc, [0.125], rtol=1e-6)  # smooth L1 of 0.5: 0.5 * 0.5 ** 2
    np.testing.assert_allclose(total, conf + loc, rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"negative_ratio": 1.5, "box_weight": 0.5, "sigma": 2.0, "min_negatives": 4}])
def test_ssd_loss_matches_the_reference(kwargs) -> None:
    rng = np.random.RandomState(3)
    batch, anchors, classes = 3, 50, 4
    class_preds = rng.normal(0, 2, (batch, anchors, classes))
    class_targets = rng.choice([-1, 0, 0, 0, 0, 0, 1, 2, 3], size=(batch, anchors)).astype("float32")
    class_targets[2] = np.where(class_targets[2] > 0, 0, class_targets[2])  # a sample without objects
    box_mask = np.repeat(class_targets > 0, 4, axis=1).astype("float32")
    box_targets = rng.normal(0, 1, (batch, anchors * 4)) * box_mask
    box_preds = rng.normal(0, 1, (batch, anchors * 4))
    arrays = (class_preds, box_preds, class_targets, box_targets, box_mask)
    reference = _reference_ssd(*arrays, ratio=kwargs.get("negative_ratio", 3.0), weight=kwargs.get("box_weight", 1.0),
                               sigma=kwargs.get("sigma", 1.0), min_negatives=kwargs.get("min_negatives", 0))
    for actual, expected in zip(_run(SSDMultiBoxLoss(**kwargs), *arrays), reference):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [SSDMultiBoxLoss, GIoULoss])
def test_an_image_without_objects_has_zero_loss_unless_negatives_are_kept(cls) -> None:
    class_preds = np.random.RandomState(0).normal(0, 1, (1, 10, 3))
    zeros = np.zeros((1, 40))
    arrays = (class_preds, zeros, np.zeros((1, 10)), zeros, zeros)
    assert [float(out[0]) for out in _run(cls(), *arrays)] == [0.0, 0.0, 0.0]
    total, conf, box = _run(cls(min_negatives=2), *arrays)
    expected = np.sort(_softmax_ce(class_preds[0], np.zeros(10)))[-2:].sum()
    np.testing.assert_allclose(conf, [expected], rtol=1e-5)
    assert box[0] == 0


# -- GIoULoss ---------------------------------------------------------------------------------------------


def _giou_term(box_preds, box_targets, mask=None):
    n = box_preds.shape[1] // 4
    mask = np.ones((1, n * 4)) if mask is None else mask
    arrays = (np.zeros((1, n, 2)), box_preds, (mask[:, ::4] > 0).astype("float32"), box_targets, mask)
    return _run(GIoULoss(), *arrays)[2][0]


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        ([0, 0, 0, 0], 0.0),  # the same box
        ([10, 0, 0, 0], 1.0),  # moved one width right: touching, IoU 0, the enclosing box is the union
        ([20, 0, 0, 0], 4 / 3),  # moved two widths: IoU 0, GIoU = -(3 - 2) / 3
        ([0, 0, np.log(2) / 0.2, 0], 0.5),  # twice as wide, same centre: IoU 1/2, the enclosing box is the union
    ],
)
def test_giou_of_known_boxes(offsets, expected) -> None:
    # The target is the anchor itself (zero offsets); the prediction is decoded relative to it.
    np.testing.assert_allclose(_giou_term(np.array([offsets], dtype="float64"), np.zeros((1, 4))), expected, rtol=1e-5)


def _decode(anchors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Centre-size decoding of MultiBoxDetection, in image coordinates: (N, 4) corners."""
    anchor_w, anchor_h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    anchor_x, anchor_y = anchors[:, 0] + anchor_w / 2, anchors[:, 1] + anchor_h / 2
    t = offsets.reshape(-1, 4) * VARIANCES
    x, y = anchor_x + t[:, 0] * anchor_w, anchor_y + t[:, 1] * anchor_h
    w, h = anchor_w * np.exp(t[:, 2]), anchor_h * np.exp(t[:, 3])
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1)


def _giou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area = lambda box: (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])  # noqa: E731
    inter = (np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
             * np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None))
    union = area(a) + area(b) - inter
    hull = ((np.maximum(a[:, 2], b[:, 2]) - np.minimum(a[:, 0], b[:, 0]))
            * (np.maximum(a[:, 3], b[:, 3]) - np.minimum(a[:, 1], b[:, 1])))
    return inter / union - (hull - union) / hull


def test_giou_without_anchors_equals_giou_in_the_image() -> None:
    # Anchors of several aspect ratios, targets encoded by MultiBoxTarget, random predictions.
    anchors = mx.nd.contrib.MultiBoxPrior(mx.nd.zeros((1, 1, 4, 4)), sizes=[0.3, 0.5], ratios=[1, 2, 0.5])
    labels = mx.nd.array([[[0, 0.1, 0.1, 0.45, 0.6], [0, 0.5, 0.55, 0.95, 0.8], [0, 0.3, 0.1, 0.7, 0.35]]])
    class_preds = mx.nd.zeros((1, 2, anchors.shape[1]))
    box_targets, box_mask, class_targets = mx.nd.contrib.MultiBoxTarget(anchors, labels, class_preds,
                                                                        overlap_threshold=0.4)
    box_targets, box_mask = box_targets.asnumpy(), box_mask.asnumpy()
    positive = box_mask[0, ::4] > 0
    assert positive.sum() >= 3
    box_preds = np.random.RandomState(5).normal(0, 2, box_targets.shape)
    corners = anchors[0].asnumpy()
    expected = (1 - _giou(_decode(corners, box_preds[0]), _decode(corners, box_targets[0])))[positive].sum()
    actual = _giou_term(box_preds, box_targets, box_mask) * positive.sum()  # the term is divided by N
    np.testing.assert_allclose(actual, expected, rtol=1e-4)
    # The targets decode back to the ground-truth boxes (the encoding this relies on).
    truth = labels[0, :, 1:].asnumpy()
    decoded = _decode(corners, box_targets[0])[positive]
    assert all(np.abs(truth - box).max(axis=1).min() < 1e-4 for box in decoded)


def test_wild_predictions_keep_the_giou_loss_and_its_gradient_finite() -> None:
    loss = GIoULoss()
    class_preds = mx.nd.zeros((1, 3, 2))
    box_preds = mx.nd.array([[1e4, -1e4, 1e4, -1e4] * 3])
    box_preds.attach_grad()
    mask = mx.nd.array([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]])
    with mx.autograd.record():
        total = loss(class_preds, box_preds, mx.nd.array([[1, 0, -1]]), mx.nd.zeros((1, 12)), mask)[0]
    total.backward()
    assert np.isfinite(total.asnumpy()).all() and np.isfinite(box_preds.grad.asnumpy()).all()


@pytest.mark.parametrize(
    ("cls", "kwargs", "fragment"),
    [
        (SSDMultiBoxLoss, {"negative_ratio": -1}, "'negative_ratio' argument of SSDMultiBoxLoss must be a number >= 0"),
        (SSDMultiBoxLoss, {"min_negatives": 1.5}, "'min_negatives' argument of SSDMultiBoxLoss must be an int >= 0"),
        (SSDMultiBoxLoss, {"sigma": 0}, "'sigma' argument of SSDMultiBoxLoss must be > 0; got 0"),
        (SSDMultiBoxLoss, {"box_weight": -2}, "'box_weight' argument of SSDMultiBoxLoss must be >= 0; got -2"),
        (GIoULoss, {"variances": [0.1, 0.1]}, "'variances' argument of GIoULoss must be 4 positive numbers"),
        (GIoULoss, {"box_weight": "1"}, "'box_weight' argument of GIoULoss must be >= 0; got '1'"),
    ],
)
def test_bad_arguments_raise_and_explain(cls, kwargs, fragment) -> None:
    with pytest.raises(InputError) as caught:
        cls(**kwargs)
    assert fragment in str(caught.value)
