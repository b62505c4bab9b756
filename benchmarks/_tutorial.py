"""The Gluon SSD tutorial's training loop and prediction, as the tutorial writes them.

Our own re-implementation from the tutorial's text (``/work/shared/seed/ssd-gluon-tutorial.md``):
an imperative ``gluon.Block`` ToySSD, ``image.ImageDetIter`` with ``mean=True``,
``rand_crop=1``, ``min_object_covered=0.95``, ``max_attempts=200``, the
``FocalLoss``/``SmoothL1Loss`` classes, ``metric.Accuracy``/``metric.MAE``
updated every batch, SGD lr 0.1 wd 5e-4; prediction is forward +
``SoftmaxActivation`` + ``MultiBoxDetection``.

It never imports detkit and is meant to run in a default environment (no
``OMP_NUM_THREADS``), as a tutorial reader would run it. ``benchmarks/bench.py``
runs it as ``python benchmarks/_tutorial.py PHASE JSON_ARGS`` and reads the JSON
line it prints last.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, image, init, metric, nd
from mxnet.contrib.ndarray import MultiBoxDetection, MultiBoxPrior, MultiBoxTarget
from mxnet.gluon import nn

RGB_MEAN = nd.array([123, 117, 104])


# -- the tutorial's model ------------------------------------------------------------

def class_predictor(num_anchors, num_classes):
    return nn.Conv2D(num_anchors * (num_classes + 1), 3, padding=1)


def box_predictor(num_anchors):
    return nn.Conv2D(num_anchors * 4, 3, padding=1)


def down_sample(num_filters):
    out = nn.HybridSequential()
    for _ in range(2):
        out.add(nn.Conv2D(num_filters, 3, strides=1, padding=1))
        out.add(nn.BatchNorm(in_channels=num_filters))
        out.add(nn.Activation("relu"))
    out.add(nn.MaxPool2D(2))
    return out


def flatten_prediction(pred):
    return pred.transpose(axes=(0, 2, 3, 1)).flatten()


def concat_predictions(preds):
    return nd.concat(*preds, dim=1)


def body():
    out = nn.HybridSequential()
    for nfilters in [16, 32, 64]:
        out.add(down_sample(nfilters))
    return out


def toy_ssd_model(num_anchors, num_classes):
    downsamplers = nn.Sequential()
    for _ in range(3):
        downsamplers.add(down_sample(128))
    class_predictors = nn.Sequential()
    box_predictors = nn.Sequential()
    for _ in range(5):
        class_predictors.add(class_predictor(num_anchors, num_classes))
        box_predictors.add(box_predictor(num_anchors))
    model = nn.Sequential()
    model.add(body(), downsamplers, class_predictors, box_predictors)
    return model


def toy_ssd_forward(x, model, sizes, ratios):
    body, downsamplers, class_predictors, box_predictors = model
    anchors, class_preds, box_preds = [], [], []
    x = body(x)
    for i in range(5):
        anchors.append(MultiBoxPrior(x, sizes=sizes[i], ratios=ratios[i]))
        class_preds.append(flatten_prediction(class_predictors[i](x)))
        box_preds.append(flatten_prediction(box_predictors[i](x)))
        if i < 3:
            x = downsamplers[i](x)
        elif i == 3:
            x = nd.Pooling(x, global_pool=True, pool_type="max", kernel=(x.shape[2], x.shape[3]))
    return concat_predictions(anchors), concat_predictions(class_preds), concat_predictions(box_preds)


class ToySSD(gluon.Block):
    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = [[.2, .272], [.37, .447], [.54, .619], [.71, .79], [.88, .961]]
        self.ratios = [[1, 2, .5]] * 5
        self.num_classes = num_classes
        num_anchors = len(self.sizes[0]) + len(self.ratios[0]) - 1
        with self.name_scope():
            self.model = toy_ssd_model(num_anchors, num_classes)

    def forward(self, x):
        anchors, class_preds, box_preds = toy_ssd_forward(x, self.model, self.sizes, self.ratios)
        class_preds = class_preds.reshape(shape=(0, -1, self.num_classes + 1))
        return anchors, class_preds, box_preds


def training_targets(anchors, class_preds, labels):
    class_preds = class_preds.transpose(axes=(0, 2, 1))
    return MultiBoxTarget(anchors, labels, class_preds)


class FocalLoss(gluon.loss.Loss):
    def __init__(self, axis=-1, alpha=0.25, gamma=2, batch_axis=0, **kwargs):
        super().__init__(None, batch_axis, **kwargs)
        self._axis = axis
        self._alpha = alpha
        self._gamma = gamma

    def hybrid_forward(self, F, output, label):
        output = F.softmax(output)
        pj = output.pick(label, axis=self._axis, keepdims=True)
        loss = - self._alpha * ((1 - pj) ** self._gamma) * pj.log()
        return loss.mean(axis=self._batch_axis, exclude=True)


class SmoothL1Loss(gluon.loss.Loss):
    def __init__(self, batch_axis=0, **kwargs):
        super().__init__(None, batch_axis, **kwargs)

    def hybrid_forward(self, F, output, label, mask):
        loss = F.smooth_l1((output - label) * mask, scalar=1.0)
        return loss.mean(self._batch_axis, exclude=True)


# -- helpers ---------------------------------------------------------------------------

def parse_context(text):
    text = text.strip()
    if text == "cpu":
        return mx.cpu()
    if text.startswith("gpu"):
        return mx.gpu(int(text[4:-1]) if "(" in text else 0)
    raise ValueError(f"unknown device {text!r}")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def new_net(ctx):
    net = ToySSD(1)
    net.initialize(init.Xavier(magnitude=2), ctx=ctx)
    return net


def conv_layers(net, size, ctx):
    """The Conv2D layers one image's forward pass meets, in order: ``(block, input shape, output shape, FLOPs)``."""
    layers = []

    def hook(block, inputs, output):
        kh, kw = block._kwargs["kernel"]
        groups = block._kwargs.get("num_group", 1)
        _, cout, h, w = output.shape
        flops = 2.0 * cout * h * w * (inputs[0].shape[1] // groups) * kh * kw
        layers.append((block, inputs[0].shape, output.shape, flops))

    convs = []
    net.apply(lambda block: convs.append(block) if isinstance(block, nn.Conv2D) else None)
    handles = [c.register_forward_hook(hook) for c in convs]
    net(nd.zeros((1, 3, size, size), ctx=ctx))
    for h in handles:
        h.detach()
    return layers


def conv_flops(net, size, ctx):
    """FLOPs of one image's forward pass, summed over the network's Conv2D layers, and of a training step."""
    layers = conv_layers(net, size, ctx)
    total = sum(flops for *_, flops in layers)
    # The layer that reads the image: no gradient needed with respect to its input.
    image = next((flops for _, shape, _, flops in layers if shape[1] == 3), 0.0)
    return total, 3 * total - image


def conv_gflops(ctx, runs=5):
    """The machine's 3x3 convolution speed: 64->64 channels, 64x64, batch 32, fp32, best of ``runs``."""
    x = nd.random.uniform(shape=(32, 64, 64, 64), ctx=ctx)
    w = nd.random.uniform(shape=(64, 64, 3, 3), ctx=ctx)
    b = nd.zeros((64,), ctx=ctx)
    flops = 2.0 * 32 * 64 * 64 * 64 * 64 * 9
    nd.Convolution(x, w, b, kernel=(3, 3), pad=(1, 1), num_filter=64).wait_to_read()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        nd.Convolution(x, w, b, kernel=(3, 3), pad=(1, 1), num_filter=64).wait_to_read()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def voc_ap50(detections, labels):
    """VOC mAP@0.5 (area under the precision envelope) for one class, numpy; enough to time the scoring."""
    scored, num_gt = [], 0
    for dets, gts in zip(detections, labels):
        gts = gts[gts[:, 0] >= 0, 1:5]
        num_gt += len(gts)
        dets = dets[dets[:, 0] >= 0]
        dets = dets[np.argsort(-dets[:, 1])]
        taken = np.zeros(len(gts), bool)
        for row in dets:
            hit = False
            if len(gts):
                ix = np.maximum(0, np.minimum(gts[:, 2], row[4]) - np.maximum(gts[:, 0], row[2]))
                iy = np.maximum(0, np.minimum(gts[:, 3], row[5]) - np.maximum(gts[:, 1], row[3]))
                inter = ix * iy
                union = ((row[4] - row[2]) * (row[5] - row[3])
                         + (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]) - inter)
                iou = inter / np.maximum(union, 1e-12)
                best = int(np.argmax(iou))
                if iou[best] >= 0.5 and not taken[best]:
                    taken[best] = hit = True
            scored.append((row[1], hit))
    if not scored or not num_gt:
        return 0.0
    scored.sort(key=lambda item: -item[0])
    hits = np.array([h for _, h in scored], float)
    tp = np.cumsum(hits)
    recall = tp / num_gt
    precision = tp / np.arange(1, len(hits) + 1)
    mrec = np.concatenate([[0], recall, [1]])
    mpre = np.concatenate([[0], precision, [0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def predict(net, x, ctx):
    anchors, cls_preds, box_preds = net(x.as_in_context(ctx))
    cls_probs = nd.SoftmaxActivation(cls_preds.transpose((0, 2, 1)), mode="channel")
    return MultiBoxDetection(cls_probs, box_preds, anchors, force_suppress=True, clip=False)


def process_image(data, data_shape):
    im = image.imdecode(data)
    data = image.imresize(im, data_shape, data_shape)
    data = data.astype("float32") - RGB_MEAN
    return data.transpose((2, 0, 1)).expand_dims(axis=0), im


# -- phases ----------------------------------------------------------------------------

def phase_train(args):
    """Two epochs over the ``train_idx`` subset: the first warms up, the second is timed."""
    ctx = parse_context(args["device"])
    size, batch_size = args["image_size"], args["batch_size"]
    train_data = image.ImageDetIter(
        batch_size=batch_size, data_shape=(3, size, size),
        path_imgrec=args["train_rec"], path_imgidx=args["train_idx"],
        shuffle=True, mean=True, rand_crop=1, min_object_covered=0.95, max_attempts=200)
    test_data = image.ImageDetIter(
        batch_size=batch_size, data_shape=(3, size, size),
        path_imgrec=args["val_rec"], shuffle=False, mean=True)
    train_data.reshape(label_shape=(3, 5))
    train_data = test_data.sync_label_shape(train_data)
    cls_loss, box_loss = FocalLoss(), SmoothL1Loss()
    cls_metric, box_metric = metric.Accuracy(), metric.MAE()
    mx.random.seed(0)
    net = new_net(ctx)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "wd": 5e-4})
    seconds, images = [], []
    for epoch in range(2):
        train_data.reset()
        cls_metric.reset()
        box_metric.reset()
        tic = time.time()
        count = 0
        for i, batch in enumerate(train_data):
            x = batch.data[0].as_in_context(ctx)
            y = batch.label[0].as_in_context(ctx)
            with autograd.record():
                anchors, class_preds, box_preds = net(x)
                box_target, box_mask, cls_target = training_targets(anchors, class_preds, y)
                loss1 = cls_loss(class_preds, cls_target)
                loss2 = box_loss(box_preds, box_target, box_mask)
                loss = loss1 + loss2
            loss.backward()
            trainer.step(batch_size)
            cls_metric.update([cls_target], [class_preds.transpose((0, 2, 1))])
            box_metric.update([box_target], [box_preds * box_mask])
            count += x.shape[0]
        print("Epoch %2d, train %s %.2f, %s %.5f, time %.1f sec" % (
            epoch, *cls_metric.get(), *box_metric.get(), time.time() - tic), file=sys.stderr)
        seconds.append(time.time() - tic)
        images.append(count)
    return {"train_img_s": images[1] / seconds[1], "train_batches": images[1] // batch_size,
            "fit_peak_rss_mb": peak_rss_mb()}


def phase_infer(args):
    ctx = parse_context(args["device"])
    size, batch_size, repeats = args["image_size"], args["batch_size"], args["repeats"]
    mx.random.seed(0)
    net = new_net(ctx)
    result = {}
    fwd, train = conv_flops(net, size, ctx)
    result["model_gflop_forward"] = fwd / 1e9
    result["model_gflop_train"] = train / 1e9
    result["conv_gflops"] = conv_gflops(ctx)

    val_iter = image.ImageDetIter(batch_size=batch_size, data_shape=(3, size, size),
                                  path_imgrec=args["val_rec"], shuffle=False, mean=True)
    # inference at batch B on a preprocessed batch
    x = next(iter(val_iter)).data[0].as_in_context(ctx)
    for _ in range(2):
        predict(net, x, ctx).wait_to_read()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(net, x, ctx).wait_to_read()
        times.append(time.perf_counter() - start)
    result["infer_img_s"] = batch_size / float(np.median(times))

    # predict latency at batch 1: one image file through process_image and predict
    with open(args["image_path"], "rb") as f:
        data = f.read()
    for _ in range(2):
        predict(net, process_image(data, size)[0], ctx).asnumpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(net, process_image(data, size)[0], ctx).asnumpy()
        times.append(time.perf_counter() - start)
    result["predict_latency_ms"] = 1000 * float(np.median(times))

    # evaluation of the validation set: forward (with reading) vs post-processing + mAP
    forward = post = 0.0
    detections, labels = [], []
    val_iter.reset()
    start = time.perf_counter()
    for batch in val_iter:
        t0 = time.perf_counter()
        anchors, cls_preds, box_preds = net(batch.data[0].as_in_context(ctx))
        mx.nd.waitall()
        t1 = time.perf_counter()
        cls_probs = nd.SoftmaxActivation(cls_preds.transpose((0, 2, 1)), mode="channel")
        out = MultiBoxDetection(cls_probs, box_preds, anchors, force_suppress=True, clip=False).asnumpy()
        keep = out.shape[0] - batch.pad
        detections.extend(out[:keep])
        labels.extend(batch.label[0].asnumpy()[:keep])
        post += time.perf_counter() - t1
        forward += t1 - t0
    t2 = time.perf_counter()
    voc_ap50(detections, labels)
    post += time.perf_counter() - t2
    total = time.perf_counter() - start
    result["eval_total_s"] = total
    result["eval_post_s"] = post
    result["eval_forward_s"] = total - post  # reading + forward
    result["eval_images"] = len(detections)

    # the reader with random crop
    train_iter = image.ImageDetIter(
        batch_size=batch_size, data_shape=(3, size, size),
        path_imgrec=args["train_rec"], path_imgidx=args["reader_idx"],
        shuffle=True, mean=True, rand_crop=1, min_object_covered=0.95, max_attempts=200)
    iterator = iter(train_iter)
    next(iterator)
    count, start = 0, time.perf_counter()
    for batch in iterator:
        batch.data[0].wait_to_read()
        count += batch.data[0].shape[0] - batch.pad
    result["reader_img_s"] = count / (time.perf_counter() - start)
    return result


if __name__ == "__main__":
    phase, arguments = sys.argv[1], json.loads(sys.argv[2])
    output = {"train": phase_train, "infer": phase_infer}[phase](arguments)
    print(json.dumps(output))
