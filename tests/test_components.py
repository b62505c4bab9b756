"""The seed's default components, against the MXNet operators they wrap and values computed by hand."""

from __future__ import annotations

import math

import mxnet as mx
import numpy as np
import pytest

from detkit.components import (
    FocalSmoothL1Loss,
    HalvingBlock,
    MultiBoxDetectionPostProcessor,
    MultiBoxPriorAnchors,
    MultiBoxTargetAssigner,
    ToyBackbone,
)
from detkit.errors import InputError


def test_first_anchor_at_the_centre_of_a_40x40_map_is_the_seeds() -> None:
    # The seed: sizes [.5, .25, .1], ratios [1, 2, .5] on a 40x40 map; the first anchor of
    # position (20, 20) is centred on (20.5 / 40) with side .5: [0.2625, 0.2625, 0.7625, 0.7625].
    generator = MultiBoxPriorAnchors(sizes=[[0.5, 0.25, 0.1]], ratios=[1, 2, 0.5])
    anchors = generator(mx.nd.zeros((1, 3, 40, 40)))
    assert anchors.shape == (1, 40 * 40 * 5, 4)
    boxes = anchors.reshape((40, 40, -1, 4))
    np.testing.assert_allclose(boxes[20, 20, 0].asnumpy(), [0.2625, 0.2625, 0.7625, 0.7625], atol=1e-6)
    # Anchor 3 is sizes[0] with ratio 2: width .5 * sqrt(2), height .5 / sqrt(2).
    xmin, ymin, xmax, ymax = boxes[20, 20, 3].asnumpy()
    assert xmax - xmin == pytest.approx(0.5 * math.sqrt(2), abs=1e-5)
    assert ymax - ymin == pytest.approx(0.5 / math.sqrt(2), abs=1e-5)


def test_anchors_on_a_non_square_input_are_square_in_pixels() -> None:
    # MultiBoxPrior sizes both sides relative to the height: size .5 on a 16x32 map
    # is .5 of the height high and .5 * 16 / 32 = .25 of the width wide.
    (xmin, ymin, xmax, ymax) = MultiBoxPriorAnchors(sizes=[[0.5]], ratios=[1])(mx.nd.zeros((1, 1, 16, 32)))[0, 0].asnumpy()
    assert xmax - xmin == pytest.approx(0.25) and ymax - ymin == pytest.approx(0.5)


def test_anchors_equal_multibox_prior_per_scale_concatenated() -> None:
    generator = MultiBoxPriorAnchors()
    maps = [mx.nd.zeros((1, 8, s, s)) for s in (32, 16, 8, 4, 1)]
    expected = mx.nd.concat(
        *[mx.nd.contrib.MultiBoxPrior(m, sizes=s, ratios=[1, 2, 0.5]) for m, s in zip(maps, generator.sizes)], dim=1
    )
    np.testing.assert_array_equal(generator(*maps).asnumpy(), expected.asnumpy())
    assert list(generator.num_anchors) == [4] * 5
    assert generator(*maps).shape == (1, 5444, 4)


def test_halving_block_and_toy_backbone_shapes() -> None:
    block = HalvingBlock(10)
    block.initialize()
    assert block(mx.nd.zeros((2, 3, 20, 20))).shape == (2, 10, 10, 10)
    backbone = ToyBackbone()
    backbone.initialize()
    (features,) = backbone(mx.nd.zeros((2, 3, 256, 256)))
    assert features.shape == (2, 64, 32, 32)
    assert tuple(backbone.out_channels) == (64,) and tuple(backbone.out_strides) == (8,)


def test_halving_block_fused_or_not_computes_the_seeds_layers_exactly(tmp_path) -> None:
    from mxnet import autograd
    from mxnet.gluon import nn

    from detkit._blocks import fused_batch_norm_relu

    seed = nn.HybridSequential()  # the seed's down_sample(8)
    for _ in range(2):
        seed.add(nn.Conv2D(8, 3, strides=1, padding=1), nn.BatchNorm(in_channels=8), nn.Activation("relu"))
    seed.add(nn.MaxPool2D(2))
    plain, fused = HalvingBlock(8), HalvingBlock(8)
    x = mx.nd.random.normal(shape=(2, 3, 16, 16))
    seed.initialize(mx.init.Xavier())
    seed(x)  # shapes
    seed.save_parameters(str(tmp_path / "seed.params"))
    for net in (plain, fused):
        net.load_parameters(str(tmp_path / "seed.params"))  # the seed's weights load: the same layout
    results = []
    for net in (seed, plain, fused):
        net.hybridize(static_alloc=True)
        with fused_batch_norm_relu(net, enabled=net is fused):  # the graph is built in this first call
            with autograd.record():
                y = net(x)
                loss = (y * y).sum()
        loss.backward()
        params = net.collect_params()
        results.append([y.asnumpy()] + [p.grad().asnumpy() for p in params.values() if p.grad_req != "null"]
                       + [p.data().asnumpy() for name, p in params.items() if "running" in name])
    with fused_batch_norm_relu(fused):
        fused_graph = fused(mx.sym.var("data")).tojson()
    plain_graph = plain(mx.sym.var("data")).tojson()
    assert "BatchNormWithReLU" not in plain_graph and plain_graph.count('"op": "Activation"') == 2
    assert fused_graph.count("_contrib_BatchNormWithReLU") == 2 and '"op": "Activation"' not in fused_graph
    assert not fused.fuses_batch_norm_relu  # only within the with statement, and nested ones restore
    with fused_batch_norm_relu(fused):
        with fused_batch_norm_relu(fused, enabled=False):
            assert not fused.fuses_batch_norm_relu
        assert fused.fuses_batch_norm_relu
    assert not fused.fuses_batch_norm_relu
    imperative = HalvingBlock(8)  # not hybridized: computes with the plain operators, whatever the flag
    seed.save_parameters(str(tmp_path / "trained.params"))  # with the running statistics just updated
    imperative.load_parameters(str(tmp_path / "trained.params"))
    with fused_batch_norm_relu(imperative):
        np.testing.assert_allclose(imperative(x).asnumpy(), seed(x).asnumpy(), rtol=1e-5, atol=1e-6)
    assert len(results[0]) == 1 + 8 + 4  # output, the gradients of 8 weights, 4 running statistics
    assert results[0][0].min() >= 0 and (results[0][0] == 0).any()  # the ReLU did something
    for other in results[1:]:
        for expected, got in zip(results[0], other):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _labels() -> mx.nd.NDArray:
    # Two images: one object each, plus padding rows.
    return mx.nd.array([
        [[0, 0.1, 0.1, 0.5, 0.6], [-1, -1, -1, -1, -1], [-1, -1, -1, -1, -1]],
        [[0, 0.4, 0.3, 0.9, 0.8], [0, 0.05, 0.05, 0.25, 0.3], [-1, -1, -1, -1, -1]],
    ])


def test_target_assigner_equals_multibox_target() -> None:
    anchors = MultiBoxPriorAnchors()(*[mx.nd.zeros((1, 1, s, s)) for s in (8, 4, 2, 1, 1)])
    class_preds = mx.nd.random.normal(shape=(2, anchors.shape[1], 2))
    assigner = MultiBoxTargetAssigner()
    got = assigner(anchors, _labels(), class_preds)
    expected = mx.nd.contrib.MultiBoxTarget(anchors, _labels(), class_preds.transpose((0, 2, 1)))
    assert (expected[2].asnumpy() >= 0).all()  # without mining, images with objects have no ignored anchor
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.asnumpy(), e.asnumpy())
    box_targets, box_mask, class_targets = got
    assert box_targets.shape == box_mask.shape == (2, anchors.shape[1] * 4)
    assert class_targets.shape == (2, anchors.shape[1])
    assert (class_targets.asnumpy() == 1).sum(axis=1).min() >= 1  # every object has an anchor


def test_target_assigner_makes_images_without_objects_background_unless_mining() -> None:
    anchors = MultiBoxPriorAnchors()(*[mx.nd.zeros((1, 1, s, s)) for s in (8, 4, 2, 1, 1)])
    class_preds = mx.nd.random.normal(shape=(2, anchors.shape[1], 2))
    labels = _labels()
    labels[1] = -1  # the second image has no object
    _, mask, class_targets = MultiBoxTargetAssigner()(anchors, labels, class_preds)
    assert (class_targets[1].asnumpy() == 0).all() and mask[1].sum().asscalar() == 0
    # With 3:1 mining, MultiBoxTarget ignores (-1) such an image and most negatives of the other.
    _, _, mined = MultiBoxTargetAssigner(negative_mining_ratio=3)(anchors, labels, class_preds)
    assert (mined[1].asnumpy() == -1).all()
    positives = (mined[0].asnumpy() > 0).sum()
    assert (mined[0].asnumpy() == 0).sum() == 3 * positives


def test_post_processor_equals_softmax_and_multibox_detection() -> None:
    anchors = MultiBoxPriorAnchors()(*[mx.nd.zeros((1, 1, s, s)) for s in (8, 4, 2, 1, 1)])
    n = anchors.shape[1]
    class_preds = mx.nd.random.normal(shape=(2, n, 3))
    box_preds = mx.nd.random.normal(scale=0.1, shape=(2, n * 4))
    got = MultiBoxDetectionPostProcessor(nms_topk=-1, clip=False)(class_preds, box_preds, anchors)
    probabilities = mx.nd.SoftmaxActivation(class_preds.transpose((0, 2, 1)), mode="channel")  # the seed's way
    expected = mx.nd.contrib.MultiBoxDetection(probabilities, box_preds, anchors, force_suppress=True, clip=False)
    np.testing.assert_allclose(got.asnumpy(), expected.asnumpy(), atol=1e-6)
    assert got.shape == (2, n, 6)
    ids = got[:, :, 0].asnumpy()
    assert set(np.unique(ids)) <= {-1.0, 0.0, 1.0}  # 0-based object classes, no background


def test_nms_topk_keeps_the_best_boxes_and_bounds_the_output() -> None:
    anchors = MultiBoxPriorAnchors()(*[mx.nd.zeros((1, 1, s, s)) for s in (8, 4, 2, 1, 1)])
    n = anchors.shape[1]  # 344
    class_preds = mx.nd.random.normal(shape=(2, n, 2))
    box_preds = mx.nd.random.normal(scale=0.1, shape=(2, n * 4))
    keep_all = MultiBoxDetectionPostProcessor(nms_topk=-1)(class_preds, box_preds, anchors).asnumpy()
    top = MultiBoxDetectionPostProcessor(nms_topk=20)(class_preds, box_preds, anchors).asnumpy()
    assert MultiBoxDetectionPostProcessor().nms_topk == 400  # the default
    assert MultiBoxDetectionPostProcessor(nms_topk=np.int64(50)).nms_topk == 50
    for image in range(2):
        kept = top[image][top[image, :, 0] >= 0]
        assert 1 <= len(kept) <= 20 < (keep_all[image, :, 0] >= 0).sum()
        # The highest-scoring box survives NMS either way.
        np.testing.assert_allclose(kept[0], keep_all[image, 0], atol=1e-6)


@pytest.mark.parametrize("nms_topk", [0, -2, 2.5, True])
def test_nms_topk_must_be_positive_or_minus_one(nms_topk) -> None:
    with pytest.raises(InputError, match="nms_topk"):
        MultiBoxDetectionPostProcessor(nms_topk=nms_topk)


@pytest.mark.parametrize("probability", [0.5, 0.9, 0.1])
def test_focal_loss_for_known_probabilities(probability: float) -> None:
    # Two classes; logits (0, log(p / (1 - p))) give softmax p for class 1.
    # Focal loss for true class 1: -0.25 * (1 - p)**2 * log(p); e.g. p = .5 -> 0.0433217.
    logit = math.log(probability / (1 - probability))
    class_preds = mx.nd.array([[[0.0, logit]] * 4])  # (1, 4, 2)
    class_targets = mx.nd.ones((1, 4))
    zeros = mx.nd.zeros((1, 16))
    loss, focal, box = FocalSmoothL1Loss()(class_preds, zeros, class_targets, zeros, zeros)
    expected = -0.25 * (1 - probability) ** 2 * math.log(probability)
    assert focal.asscalar() == pytest.approx(expected, rel=1e-4)  # float32
    assert box.asscalar() == 0.0
    assert loss.asscalar() == pytest.approx(expected, rel=1e-4)
    if probability == 0.5:
        assert focal.asscalar() == pytest.approx(0.0433217, rel=1e-5)


def test_focal_loss_equals_the_seeds_formula_and_smooth_l1_equals_mxnets() -> None:
    class_preds = mx.nd.random.normal(shape=(3, 50, 4))
    class_targets = mx.nd.array(np.random.randint(0, 4, size=(3, 50)))
    box_preds = mx.nd.random.normal(shape=(3, 200))
    box_targets = mx.nd.random.normal(shape=(3, 200))
    box_mask = mx.nd.array(np.random.randint(0, 2, size=(3, 200)))
    loss, focal, box = FocalSmoothL1Loss()(class_preds, box_preds, class_targets, box_targets, box_mask)
    p = mx.nd.softmax(class_preds).pick(class_targets, axis=-1)
    seed_focal = (-0.25 * (1 - p) ** 2 * p.log()).mean(axis=1)
    seed_box = mx.nd.smooth_l1((box_preds - box_targets) * box_mask, scalar=1.0).mean(axis=1)
    np.testing.assert_allclose(focal.asnumpy(), seed_focal.asnumpy(), rtol=1e-5)
    np.testing.assert_allclose(box.asnumpy(), seed_box.asnumpy(), rtol=1e-5)
    np.testing.assert_allclose(loss.asnumpy(), (seed_focal + seed_box).asnumpy(), rtol=1e-5)
    # Smooth L1 by hand: x = 0.5 -> 0.125; x = 2 -> 1.5 (sigma 1).
    one = mx.nd.ones((1, 1))
    _, _, small = FocalSmoothL1Loss()(mx.nd.zeros((1, 1, 2)), one * 0.5, mx.nd.zeros((1, 1)), one * 0, one)
    _, _, large = FocalSmoothL1Loss()(mx.nd.zeros((1, 1, 2)), one * 2, mx.nd.zeros((1, 1)), one * 0, one)
    assert small.asscalar() == pytest.approx(0.125) and large.asscalar() == pytest.approx(1.5)


def test_focal_loss_ignores_anchors_marked_minus_one() -> None:
    class_preds = mx.nd.random.normal(shape=(1, 4, 2))
    zeros = mx.nd.zeros((1, 16))
    all_kept = FocalSmoothL1Loss()(class_preds, zeros, mx.nd.array([[1, 0, 0, 0]]), zeros, zeros)[1]
    ignored = FocalSmoothL1Loss()(class_preds, zeros, mx.nd.array([[1, 0, -1, -1]]), zeros, zeros)[1]
    p = mx.nd.softmax(class_preds)[0].asnumpy()
    by_hand = sum(-0.25 * (1 - p[i, j]) ** 2 * math.log(p[i, j]) for i, j in ((0, 1), (1, 0))) / 4
    assert ignored.asscalar() == pytest.approx(by_hand, rel=1e-5)
    assert all_kept.asscalar() > ignored.asscalar()


@pytest.mark.parametrize(
    ("build", "names"),
    [
        (lambda: MultiBoxPriorAnchors(sizes=[[0.2], [0.4]], ratios=[[1]]), ("sizes", "ratios", "2", "1")),
        (lambda: MultiBoxPriorAnchors(sizes=[[0.2, 1.5]]), ("size", "(0, 1]", "1.5")),
        (lambda: MultiBoxPriorAnchors(sizes=[[0.0]]), ("size", "(0, 1]", "0.0")),
        (lambda: MultiBoxPriorAnchors(sizes=[[0.2]], ratios=[-1]), ("ratio", "> 0", "-1")),
        (lambda: MultiBoxPriorAnchors(sizes=[]), ("sizes", "[]")),
        (lambda: ToyBackbone(filters=[]), ("filters", "[]")),
        (lambda: FocalSmoothL1Loss(alpha=0), ("alpha", "0")),
        (lambda: MultiBoxTargetAssigner(variances=[1, 2]), ("variances", "[1, 2]")),
        (lambda: MultiBoxDetectionPostProcessor(nms_threshold=2), ("nms_threshold", "2")),
    ],
)
def test_bad_component_arguments_name_the_argument_and_the_value(build, names) -> None:
    with pytest.raises(InputError) as caught:
        build()
    for part in names:
        assert part in str(caught.value)


def test_post_processor_clips_to_the_image_and_drops_boxes_left_without_area() -> None:
    anchors = mx.nd.array([[[-0.3, 0.2, 0.4, 0.6], [0.5, 0.5, 1.6, 1.2], [1.1, 0.2, 1.5, 0.5]]])  # (1, 3, 4)
    class_preds = mx.nd.array([[[0, 9, 0], [0, 0, 9], [0, 9, 0]]], dtype="float32")  # confident objects
    box_preds = mx.nd.zeros((1, 12))
    clipped = MultiBoxDetectionPostProcessor(nms_threshold=0.99)(class_preds, box_preds, anchors).asnumpy()[0]
    kept = clipped[clipped[:, 0] >= 0]
    # The third anchor lies wholly right of the image: clipped to no area, it is no detection.
    np.testing.assert_allclose(sorted(kept[:, 2:].tolist()), [[0, 0.2, 0.4, 0.6], [0.5, 0.5, 1, 1]], atol=1e-5)
    seed = MultiBoxDetectionPostProcessor(nms_threshold=0.99, clip=False)(class_preds, box_preds, anchors)
    raw = seed.asnumpy()[0]
    assert (raw[:, 0] >= 0).sum() == 3 and raw[:, 2:].min() < 0 and raw[:, 2:].max() > 1  # the seed's recipe
    assert MultiBoxDetectionPostProcessor().clip  # clipping is the default
