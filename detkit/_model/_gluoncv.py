"""GluonCV's model-zoo SSDs as detkit detectors: :func:`import_gluoncv`.

A GluonCV SSD is a body (VGG-16 atrous, a ResNet v1 or a MobileNet), the extra
layers GluonCV appends to it, 3 x 3 class and box heads, anchors in pixels
and a decoder with per-class NMS. Each has a detkit component: the backbone
``gluoncv_features`` (gluon-detkit-zoo; its ResNet bodies come from
gluon-detkit-resnet), the anchor generator ``gluoncv_anchors`` and the
post-processor ``gluoncv_decoder`` (built in). The import builds that detector
and copies every parameter of GluonCV's ``.params`` file into it by name;
nothing of GluonCV is imported or needed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import mxnet as mx
from mxnet.gluon import nn

from .._base import PathLike, check_classes, check_size
from .._pretrained import GLUONCV_SSD_SHA1, gluoncv_model_file
from ..data._voc import VOC_CLASSES
from ..errors import CheckpointError, InputError
from ._detector import ComponentSpec, SSDDetector

__all__ = ["GLUONCV_MODELS", "import_gluoncv"]

#: COCO's 80 classes in GluonCV's order (``gluoncv.data.COCODetection.CLASSES``).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

_RATIOS_6 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2
_RATIOS_7 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 4 + [[1, 2, 0.5]] * 2
_SIZES_300_VOC = [30, 60, 111, 162, 213, 264, 315]
_SIZES_300_COCO = [21, 45, 99, 153, 207, 261, 315]
_SIZES_VGG512 = [51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6]
_SIZES_512 = [51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492]
_SIZES_R50_COCO = [51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72]
_STEPS = {300: [8, 16, 32, 64, 100, 300], 512: [16, 32, 64, 128, 256, 512]}
# GluonCV's VGG-16 atrous: its own convolutions on mean-subtracted 0-255 input, L2 norm with eps 1e-5.
_VGG = {"name": "vgg16_atrous", "caffe_input": True, "l2_eps": 1e-5}


def _per_dataset(voc: Sequence[float], coco: Sequence[float] | None = None) -> dict[str, Sequence[float]]:
    """Anchor sizes by data set: ``_custom`` networks take COCO's (GluonCV's ``ssd_*_custom``)."""
    return {"voc": voc, "coco": coco or voc, "custom": coco or voc}


def _expander(filters: Sequence[int]) -> list[list[list[int]]]:
    # GluonCV's FeatureExpander with SSD's defaults (reduce_ratio 1, min_depth 128).
    return [[[max(128, f), 1, 1, 0], [f, 3, 2, 1]] for f in filters]


def _expanded(size: int, body: str, filters: Sequence[int], sizes: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """A GluonCV SSD on a ResNet or MobileNet body: its stages 3 and 4, then FeatureExpander's extra layers."""
    return {"size": size, "body": {"name": body, "stages": [3, 4]}, "extras": _expander(filters), "batch_norm": True,
            "sizes": sizes, "ratios": _RATIOS_6, "steps": _STEPS[size]}


_VGG300_EXTRAS = [[[256, 1, 1, 0], [512, 3, 2, 1]], [[128, 1, 1, 0], [256, 3, 2, 1]],
                  [[128, 1, 1, 0], [256, 3, 1, 0]], [[128, 1, 1, 0], [256, 3, 1, 0]]]
_VGG512_EXTRAS = [[[256, 1, 1, 0], [512, 3, 2, 1]]] + [[[128, 1, 1, 0], [256, 3, 2, 1]]] * 3 + [
    [[128, 1, 1, 0], [256, 4, 1, 1]]]

#: The GluonCV SSD architectures detkit imports (GluonCV's model names without the data set),
#: each with its input size, body, extra layers and anchors (sizes per data set).
GLUONCV_MODELS: Mapping[str, Mapping[str, Any]] = {
    "ssd_300_vgg16_atrous": {"size": 300, "body": _VGG, "extras": _VGG300_EXTRAS, "batch_norm": False,
                             "sizes": _per_dataset(_SIZES_300_VOC, _SIZES_300_COCO), "ratios": _RATIOS_6,
                             "steps": _STEPS[300]},
    "ssd_512_vgg16_atrous": {"size": 512, "body": _VGG, "extras": _VGG512_EXTRAS, "batch_norm": False,
                             "sizes": _per_dataset(_SIZES_VGG512), "ratios": _RATIOS_7,
                             "steps": [8, 16, 32, 64, 128, 256, 512]},
    "ssd_512_resnet18_v1": _expanded(512, "resnet18_v1", [512, 512, 256, 256], _per_dataset(_SIZES_512)),
    "ssd_512_resnet50_v1": _expanded(512, "resnet50_v1", [512, 512, 256, 256],
                                     _per_dataset(_SIZES_512, _SIZES_R50_COCO)),
    "ssd_512_mobilenet1.0": _expanded(512, "mobilenet1_0", [512, 512, 256, 256], _per_dataset(_SIZES_512)),
    "ssd_300_mobilenet0.25": _expanded(300, "mobilenet0_25", [256, 256, 128, 128], _per_dataset(_SIZES_300_COCO)),
}
_DATASET_CLASSES = {"voc": VOC_CLASSES, "coco": COCO_CLASSES}
_NAME = re.compile(r"(?P<arch>ssd_\d+_[a-z0-9.]+(?:_v1|_atrous)?)_(?P<dataset>voc|coco|custom)\Z")
_BODY_PREFIX = re.compile(r"(?:resnetv1|mobilenet)\d+_")
_IGNORED = re.compile(r"anchor_generators\.\d+\.anchors\Z|features\.init_scale\Z")  # constants detkit computes


def import_gluoncv(
    source: str | os.PathLike[str],
    *,
    name: str | None = None,
    classes: Sequence[str] | None = None,
    data_shape: int | Sequence[int] | None = None,
    root: Optional[PathLike] = None,
    target_assigner: ComponentSpec = "multibox_target",
    loss: ComponentSpec = "focal_smooth_l1",
    ctx: mx.Context | None = None,
    hybridize: bool = True,
) -> SSDDetector:
    """A GluonCV SSD, with its weights, as an :class:`SSDDetector` that detects as GluonCV's ``net(x)`` does.

    The detector has GluonCV's body, extra layers, class and box heads with
    their weights, its anchors (``gluoncv_anchors``), its decoding and per-class
    NMS (``gluoncv_decoder``: ``nms_thresh`` 0.45, ``nms_topk`` 400,
    ``post_nms`` 100) and its input normalisation (each body starts from
    detkit's input). On the same image resized to ``data_shape``, its
    :meth:`~SSDDetector.detect` returns GluonCV's ``ids``, ``scores`` and
    ``bboxes`` (boxes divided by the image size; the rows in the same order),
    up to float rounding. Save it with :meth:`SSDDetector.save`, fine-tune it
    with :meth:`SSDDetector.with_classes` and :func:`detkit.fit`.

    Supported: ``ssd_300_vgg16_atrous``,
    ``ssd_512_vgg16_atrous``, ``ssd_512_resnet18_v1``, ``ssd_512_resnet50_v1``,
    ``ssd_512_mobilenet1.0`` and ``ssd_300_mobilenet0.25``, each with ``_voc``,
    ``_coco`` or ``_custom``. Needs the plugins gluon-detkit-zoo (and
    gluon-detkit-resnet for the ResNets).

    Parameters
    ----------
    source : str or os.PathLike
        A GluonCV model zoo name with published weights (``ssd_300_vgg16_atrous``,
        ``ssd_512_vgg16_atrous``, ``ssd_512_resnet50_v1`` and ``ssd_512_mobilenet1.0``,
        each ``_voc`` or ``_coco``): its file is read from ``root``, or
        downloaded there and checked against GluonCV's SHA-1 sum. Or a
        ``.params`` file: GluonCV's own, or a network of yours saved with
        ``net.save_parameters`` (then give ``name``).
    name : str, optional
        For a file: the GluonCV model it was built from (``"ssd_512_resnet50_v1_voc"``,
        ``"ssd_512_mobilenet1.0_custom"``). Default: the file name without its
        ``-HASH.params``, when that is a GluonCV name.
    classes : sequence of str, optional
        The network's classes, in its order. Default: VOC's 20 or COCO's 80
        (GluonCV's lists) for ``_voc`` and ``_coco``; required for ``_custom``
        and for a network whose classes were reset.
    data_shape : int or (int, int), optional
        The input size; default GluonCV's (300 or 512). GluonCV's anchors are in
        pixels: the detector equals GluonCV's network on images of this size.
    root : str or os.PathLike, optional
        The model store folder; default ``$MXNET_HOME/models``.
    target_assigner, loss : ComponentSpec
        For training (GluonCV's own training is close to ``multibox_target``
        with hard-negative mining and ``ssd_multibox`` of gluon-detkit-losses).
    ctx : mxnet.Context, optional
    hybridize : bool, default True

    Raises
    ------
    InputError
        If the name is not a supported GluonCV SSD, the file does not exist, or
        the classes do not fit the network.
    CheckpointError
        If the file is not a parameters file of that network.
    DownloadError
        If the zoo's file is not in ``root`` and cannot be downloaded or verified.
    ComponentNotFoundError
        If gluon-detkit-zoo (or gluon-detkit-resnet) is not installed.
    """
    path, name = _resolve(source, name, root)
    match = _NAME.match(name)
    if match is None or match["arch"] not in GLUONCV_MODELS:
        supported = ", ".join(f"{arch}_{{voc,coco,custom}}" for arch in GLUONCV_MODELS)
        raise InputError(f"The 'name' argument must name a GluonCV SSD that detkit imports ({supported}); "
                         f"got {name!r} instead.")
    spec, dataset = GLUONCV_MODELS[match["arch"]], match["dataset"]
    if classes is None:
        if dataset == "custom":
            raise InputError(f"The 'classes' argument is needed for {name}: a custom GluonCV network's file does "
                             "not name its classes; give them in the network's order.")
        classes = _DATASET_CLASSES[dataset]
    classes = check_classes(classes)  # before anything reads it: a plain string is no list of names
    values = _read(path)
    shape = check_size("data_shape", data_shape) if data_shape is not None else (spec["size"], spec["size"])
    detector = SSDDetector(
        list(classes),
        backbone={"name": "gluoncv_features", "body": dict(spec["body"]), "extras": spec["extras"],
                  "batch_norm": spec["batch_norm"]},
        anchor_generator={"name": "gluoncv_anchors", "sizes": spec["sizes"][dataset], "ratios": spec["ratios"],
                          "steps": spec["steps"], "image_size": list(shape)},
        target_assigner=target_assigner, loss=loss, post_processor="gluoncv_decoder",
        data_shape=shape, ctx=ctx, hybridize=hybridize,
    )
    head = values.get("class_predictors.0.predictor.weight")
    anchors = detector.anchor_generator.num_anchors[0]
    if head is not None and head.shape[0] != anchors * (len(detector.classes) + 1):
        raise InputError(
            f"{path} holds a network of {head.shape[0] // anchors - 1} classes, but {len(detector.classes)} classes "
            "were given; give the network's classes in its order (the 'classes' argument)."
        )
    detector._materialize()
    _copy(detector, values, path, spec["body"]["name"] == "vgg16_atrous")
    return detector


def _resolve(source: str | os.PathLike[str], name: str | None, root: PathLike | None) -> tuple[Path, str]:
    """The parameters file to read and the GluonCV model name it holds."""
    text = os.fspath(source)
    if not isinstance(text, str) or not text:
        raise InputError(f"The 'source' argument must be a GluonCV model name or a .params file; got {source!r}.")
    if text in GLUONCV_SSD_SHA1 and not Path(text).exists():
        if name is not None and name != text:
            raise InputError(f"The 'name' argument {name!r} differs from the model {text!r} to download.")
        return gluoncv_model_file(text, root), text
    path = Path(text).expanduser()
    if not path.is_file():
        published = ", ".join(sorted(GLUONCV_SSD_SHA1))
        hint = (f" GluonCV publishes no weights for {text}; import a file of yours with --name {text}."
                if _NAME.match(text) else "")
        raise InputError(f"{path} is neither a .params file nor a GluonCV SSD with published weights "
                         f"({published}).{hint}")
    if name is None:
        guess = re.sub(r"-[0-9a-f]{8}\Z", "", path.name[:-len(".params")] if path.name.endswith(".params") else "")
        if not _NAME.match(guess):
            raise InputError(f"Name the GluonCV model that {path} was saved from (the 'name' argument, or --name), "
                             "such as ssd_512_mobilenet1.0_voc or ssd_512_resnet50_v1_custom.")
        name = guess
    return path, name


def _read(path: Path) -> dict[str, mx.nd.NDArray]:
    """The arrays of an MXNet parameters file, by name (``mx.nd.load``: no code runs)."""
    try:
        loaded = mx.nd.load(str(path))
    except (mx.base.MXNetError, OSError, ValueError) as error:
        detail = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path} is not an MXNet parameters file (net.save_parameters): {detail}") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} holds unnamed arrays, not the parameters of a network (net.save_parameters).")
    return loaded


def _copy(detector: SSDDetector, values: Mapping[str, mx.nd.NDArray], path: Path, vgg: bool) -> None:
    """Set every parameter of the detector's network from GluonCV's ``values``, by GluonCV's names."""
    network = detector.network
    features = detector.backbone
    pairs: list[tuple[Any, str]] = []  # (parameter, GluonCV's name)
    body = features.body
    if vgg:
        convs = [layer for part in (body.conv4_3, body.conv5_3) for layer in part if isinstance(layer, nn.Conv2D)]
        convs += [body.fc6, body.fc7]
        names = [f"features.stages.{stage}.{2 * i}" for stage, count in enumerate((2, 2, 3, 3, 3, 2))
                 for i in range(count)]
        for conv, gluoncv in zip(convs, names):
            pairs += [(conv.weight, f"{gluoncv}.weight"), (conv.bias, f"{gluoncv}.bias")]
        pairs.append((body.conv4_3_scale, "features.norm4.scale"))
        for index, layer in enumerate(features.layers):
            for position, block in enumerate(layer):
                if isinstance(block, nn.Conv2D):
                    pairs += [(block.weight, f"features.extras.{index}.{position}.weight"),
                              (block.bias, f"features.extras.{index}.{position}.bias")]
    else:
        found = [m.group(1) for key in values for m in [re.match(r"features\.((?:resnetv1|mobilenet)\d+_)conv0_weight\Z",
                                                                  key)] if m]
        if len(found) != 1:
            raise CheckpointError(f"{path} is not the parameters file of a GluonCV SSD with a ResNet or MobileNet "
                                  "body (no single features.*_conv0_weight in it).")
        for key, parameter in body.collect_params().items():
            short = key[len(features.prefix):] if key.startswith(features.prefix) else key
            match = _BODY_PREFIX.match(short)
            if match is None:
                raise CheckpointError(f"The body parameter {key} has no model zoo name to take GluonCV's value from.")
            pairs.append((parameter, f"features.{found[0]}{short[match.end():]}"))
        for index, layer in enumerate(features.layers):
            # conv, BatchNorm, ReLU for the 1 x 1 transition, then the same for the 3 x 3 convolution.
            for position, kind in ((0, "trans_conv"), (3, "conv")):
                pairs.append((layer[position].weight, f"features.expand_{kind}{index}_weight"))
                norm = layer[position + 1]
                stem = f"features.expand_{kind.replace('conv', 'bn')}{index}_"
                pairs += [(norm.gamma, stem + "gamma"), (norm.beta, stem + "beta"),
                          (norm.running_mean, stem + "moving_mean"), (norm.running_var, stem + "moving_var")]
    for index, (cls_head, box_head) in enumerate(zip(network.class_heads, network.box_heads)):
        for kind, head in (("class", cls_head), ("box", box_head)):
            pairs += [(head.weight, f"{kind}_predictors.{index}.predictor.weight"),
                      (head.bias, f"{kind}_predictors.{index}.predictor.bias")]
    assigned = {id(parameter) for parameter, _ in pairs}
    missing_here = [p.name for p in network.collect_params().values() if id(p) not in assigned]
    if missing_here:  # a detkit parameter no GluonCV name was found for: a bug of this mapping, never silent
        raise CheckpointError(f"No GluonCV parameter maps to {', '.join(missing_here[:3])} of the detector.")
    used = {gluoncv for _, gluoncv in pairs}
    for parameter, gluoncv in pairs:
        value = values.get(gluoncv)
        if value is None:
            raise CheckpointError(f"{path} has no parameter {gluoncv}: it is not a GluonCV network of this model "
                                  "(check the name it was built from).")
        if tuple(value.shape) != tuple(parameter.shape):
            raise CheckpointError(
                f"{path}'s {gluoncv} has the shape {tuple(value.shape)}, the detector's {tuple(parameter.shape)}: the "
                "file is not a network of this model (check the name it was built from and its classes).")
        parameter.set_data(value)
    unused = sorted(key for key in values if key not in used and not _IGNORED.match(key))
    if unused:
        raise CheckpointError(f"{path} has parameters that this model does not have ({', '.join(unused[:3])}, ...): "
                              "it is another network; check the name it was built from.")
