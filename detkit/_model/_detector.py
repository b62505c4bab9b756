"""SSDDetector: components composed into one hybridizable network, saved and exported."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Tuple, Union, cast

import mxnet as mx
import numpy as np
import yaml
from mxnet import gluon
from mxnet.gluon import nn

from .._base import (
    FolderSnapshot,
    PathLike,
    atomic_outputs,
    atomic_write_text,
    check_bool,
    check_classes,
    check_positive_int,
    check_size,
    distribution_version,
    file_digest,
    folder_generation,
    load_yaml,
    make_dirs,
    owned_files,
    read_consistent,
    scratch_folder,
    storage_errors,
)
from .._blocks import HalvingBlock
from .._plugins import KINDS, check_kind, get_registry, missing_component_hint, parse_component_spec
from ..data import RGB_MEAN
from ..errors import CheckpointError, ComponentNotFoundError, InputError
from ..interfaces import AnchorGenerator, Backbone, Component, Loss, PostProcessor, TargetAssigner
from ._onnx import export_onnx
from ._predict import predict
from ._quantize import CALIBRATION_MODES, calibration_batches, import_quantized, quantize_network, require_int8

__all__ = ["ComponentSpec", "SSDDetector", "default_context"]

#: How a component is given: a registered name, ``(name, kwargs)``, a mapping
#: ``{"name": ..., "kwargs": {...}}`` (or ``{"name": ..., **kwargs}``), or an instance.
ComponentSpec = Union[str, Tuple[str, Mapping[str, Any]], Mapping[str, Any], Component]

#: The components that :meth:`SSDDetector.load` may swap: those without weights in the network.
_SWAPPABLE = ("target_assigner", "loss", "post_processor")
#: The ``format`` of a saved ``detector.yaml``.
DETECTOR_FORMAT = "detkit-detector/1"
_CONFIG_FILE = "detector.yaml"
_PARAMS_FILE = "network.params"
_EXPORT_PREFIX = "detector"
_INT8_PREFIX = "network-int8"
_EXPORT_SUFFIXES = ("-symbol.json", "-0000.params")

#: The seed's components by kind: the defaults of SSDDetector and of a configuration's ``model`` section.
DEFAULT_COMPONENTS: Mapping[str, str] = {
    "backbone": "toy",
    "anchor_generator": "multibox_prior",
    "target_assigner": "multibox_target",
    "loss": "focal_smooth_l1",
    "post_processor": "multibox_detection",
}

#: The seed's halving blocks after the backbone have 128 filters; its images are 256 x 256.
DEFAULT_SCALE_FILTERS = 128
DEFAULT_DATA_SHAPE = 256


def default_context() -> mx.Context:
    """The first GPU when MXNet sees one (``mxnet-cu112``), else the CPU."""
    return mx.gpu(0) if mx.context.num_gpus() > 0 else mx.cpu()


class _SSDNetwork(gluon.HybridBlock):
    """Backbone, scale blocks, heads and anchors: images -> ``(anchors, class_preds, box_preds)``."""

    def __init__(self, backbone: Backbone, anchor_generator: AnchorGenerator, num_classes: int,
                 scale_filters: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        extra_scales = anchor_generator.num_scales - len(backbone.out_channels)
        with self.name_scope():
            self.backbone = backbone
            self.anchor_generator = anchor_generator
            # The seed: halving blocks until one scale is left, which a global max-pool makes 1x1.
            self.scale_blocks = nn.HybridSequential()
            for _ in range(extra_scales - 1):
                self.scale_blocks.add(HalvingBlock(scale_filters))
            if extra_scales > 0:
                self.scale_blocks.add(nn.GlobalMaxPool2D())
            self.class_heads = nn.HybridSequential()
            self.box_heads = nn.HybridSequential()
            for anchors in anchor_generator.num_anchors:
                self.class_heads.add(nn.Conv2D(anchors * (num_classes + 1), kernel_size=3, padding=1))
                self.box_heads.add(nn.Conv2D(anchors * 4, kernel_size=3, padding=1))

    def features(self, F: Any, x: Any) -> list[Any]:
        """The feature map of every scale: the backbone's, then the scale blocks'."""
        features = list(self.backbone(x))
        for block in self.scale_blocks:
            features.append(block(features[-1]))
        return features

    def heads(self, F: Any, features: list[Any]) -> tuple[Any, Any]:
        """``(class_preds (B, N, C+1), box_preds (B, N*4))`` of the feature maps of every scale."""
        # Channel-last then flat, so that each anchor's predictions are contiguous: (B, H_i*W_i*A_i*k).
        class_preds = [F.flatten(F.transpose(head(f), axes=(0, 2, 3, 1))) for head, f in zip(self.class_heads, features)]
        box_preds = [F.flatten(F.transpose(head(f), axes=(0, 2, 3, 1))) for head, f in zip(self.box_heads, features)]
        class_preds = F.concat(*class_preds, dim=1).reshape((0, -1, self.num_classes + 1))  # (B, N, C+1)
        box_preds = F.concat(*box_preds, dim=1)  # (B, N*4)
        return class_preds, box_preds

    def hybrid_forward(self, F: Any, x: Any) -> tuple[Any, Any, Any]:
        features = self.features(F, x)
        anchors = F.BlockGrad(self.anchor_generator(*features))  # (1, N, 4); depend on shapes only: no gradient
        class_preds, box_preds = self.heads(F, features)
        return anchors, class_preds, box_preds


class _InferenceNetwork(gluon.HybridBlock):
    """The network followed by the post-processor: images -> detections ``(B, K, 6)``."""

    def __init__(self, network: _SSDNetwork, post_processor: PostProcessor) -> None:
        super().__init__()
        with self.name_scope():
            self.network = network
            self.post_processor = post_processor

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        anchors, class_preds, box_preds = self.network(x)
        return self.post_processor(class_preds, box_preds, anchors)


class SSDDetector:
    """A single-shot multibox detector composed of swappable components.

    ``SSDDetector(classes=["pikachu"])`` is the toy SSD of the seed tutorial:
    the toy backbone, three halving scale blocks of 128 filters and a global
    max-pool, 3x3 class and box heads on 5 scales, ``MultiBoxPrior`` anchors,
    ``MultiBoxTarget`` targets, focal + smooth-L1 loss and ``MultiBoxDetection``.
    For a ``(B, 3, 256, 256)`` batch it predicts on 32, 16, 8, 4 and 1 pixel
    maps: 5444 anchors, class predictions ``(B, 5444, C + 1)`` and box
    predictions ``(B, 21776)``.

    Each of the five components is given as a :data:`ComponentSpec`: a
    registered name (``"toy"``), a ``(name, kwargs)`` pair, a mapping
    ``{"name": name, "kwargs": {...}}`` (or ``{"name": name, **kwargs}``), or a
    component instance. The defaults are the seed's components.

    Parameters
    ----------
    classes : sequence of str
        The object class names, unique and non-empty; class id ``i`` is ``classes[i]``.
    backbone : ComponentSpec, default "toy"
        The body: images to feature maps (a :class:`~detkit.interfaces.Backbone`).
    anchor_generator : ComponentSpec, default "multibox_prior"
        The anchors of each feature map (an :class:`~detkit.interfaces.AnchorGenerator`).
    target_assigner : ComponentSpec, default "multibox_target"
        Matches anchors to the labelled boxes for training (a :class:`~detkit.interfaces.TargetAssigner`).
    loss : ComponentSpec, default "focal_smooth_l1"
        The training loss of class and box predictions (a :class:`~detkit.interfaces.Loss`).
    post_processor : ComponentSpec, default "multibox_detection"
        Predictions to detections (a :class:`~detkit.interfaces.PostProcessor`); the default
        keeps each image's 400 best boxes before NMS, where the seed keeps all.
    scale_filters : int, default 128
        Filters of the halving blocks the detector adds after the backbone.
    data_shape : int or (int, int), default 256
        The input size ``S`` (``S x S``) or ``(H, W)`` that images are resized to for
        training and prediction (the seed: 256).
    ctx : mxnet.Context, optional
        Where the network lives; default: :func:`default_context` (GPU if any).
    hybridize : bool, default True
        Compile the network into a static graph (faster; same results).

    Attributes
    ----------
    classes : list of str
    data_shape : (int, int)
        The input size ``(H, W)`` that images are resized to.
    scale_filters : int
    ctx : mxnet.Context
    network : mxnet.gluon.HybridBlock
        Images ``(B, 3, H, W)`` -> ``(anchors (1, N, 4), class_preds (B, N, C+1), box_preds (B, N*4))``.
    backbone, anchor_generator, target_assigner, loss, post_processor : Component
        The built components.

    Examples
    --------
    >>> import mxnet as mx
    >>> from detkit import SSDDetector
    >>> detector = SSDDetector(classes=["pikachu"], ctx=mx.cpu())
    >>> anchors, class_preds, box_preds = detector(mx.nd.zeros((2, 3, 256, 256)))
    >>> anchors.shape, class_preds.shape, box_preds.shape
    ((1, 5444, 4), (2, 5444, 2), (2, 21776))
    """

    def __init__(
        self,
        classes: Sequence[str],
        *,
        backbone: ComponentSpec = DEFAULT_COMPONENTS["backbone"],
        anchor_generator: ComponentSpec = DEFAULT_COMPONENTS["anchor_generator"],
        target_assigner: ComponentSpec = DEFAULT_COMPONENTS["target_assigner"],
        loss: ComponentSpec = DEFAULT_COMPONENTS["loss"],
        post_processor: ComponentSpec = DEFAULT_COMPONENTS["post_processor"],
        scale_filters: int = DEFAULT_SCALE_FILTERS,
        data_shape: int | Sequence[int] = DEFAULT_DATA_SHAPE,
        ctx: mx.Context | None = None,
        hybridize: bool = True,
    ) -> None:
        self.classes = check_classes(classes)
        self.data_shape: tuple[int, int] = check_size("data_shape", data_shape)
        check_positive_int("scale_filters", scale_filters)
        if ctx is not None and not isinstance(ctx, mx.Context):
            raise InputError(f"The 'ctx' argument must be an mxnet.Context such as mx.cpu(); got {ctx!r} instead.")
        self.scale_filters = scale_filters
        self.ctx = ctx if ctx is not None else default_context()
        self._components: dict[str, Component] = {}
        self._specs: dict[str, tuple[str, dict[str, Any]]] = {}
        given = {
            "backbone": backbone,
            "anchor_generator": anchor_generator,
            "target_assigner": target_assigner,
            "loss": loss,
            "post_processor": post_processor,
        }
        for kind in KINDS:
            self._components[kind], self._specs[kind] = build_component_spec(kind, given[kind])
        self.backbone = cast(Backbone, self._components["backbone"])
        self.anchor_generator = cast(AnchorGenerator, self._components["anchor_generator"])
        self.target_assigner = cast(TargetAssigner, self._components["target_assigner"])
        self.loss = cast(Loss, self._components["loss"])
        self.post_processor = cast(PostProcessor, self._components["post_processor"])

        encoded = getattr(self.target_assigner, "variances", None)
        decoded = getattr(self.post_processor, "variances", None)
        if encoded is not None and decoded is not None and list(encoded) != list(decoded):
            raise InputError(
                f"The target assigner encodes box offsets with variances {list(encoded)} but the post-processor "
                f"decodes them with {list(decoded)}; give both the same 'variances'."
            )
        backbone_scales = len(self.backbone.out_channels)
        if backbone_scales != len(self.backbone.out_strides) or backbone_scales < 1:
            raise InputError(
                f"The backbone {self._specs['backbone'][0]!r} must declare one out_channels and one "
                f"out_strides entry per feature map; got {list(self.backbone.out_channels)} and "
                f"{list(self.backbone.out_strides)} instead."
            )
        if min(self.data_shape) < self.min_input_size:
            raise InputError(
                f"The 'data_shape' argument must be at least {self.min_input_size} on each side for this "
                f"network; got {self.data_shape} instead."
            )
        if self.anchor_generator.num_scales < backbone_scales:
            raise InputError(
                f"The anchor generator has {self.anchor_generator.num_scales} scales but the backbone "
                f"returns {backbone_scales} feature maps; give the anchor generator at least one scale "
                "per backbone feature map."
            )
        self.network = _SSDNetwork(self.backbone, self.anchor_generator, len(self.classes), scale_filters)
        self.network.initialize(mx.init.Xavier(magnitude=2), ctx=self.ctx)  # the seed's initialisation
        for kind in ("target_assigner", "loss", "post_processor"):
            self._components[kind].initialize(ctx=self.ctx)
        self._inference = _InferenceNetwork(self.network, self.post_processor)
        self.hybridized = check_bool("hybridize", hybridize)
        if self.hybridized:
            self._inference.hybridize(static_alloc=True)
            self.network.hybridize(static_alloc=True)
        self._quantized: gluon.SymbolBlock | None = None

    def with_classes(
        self,
        classes: Sequence[str],
        reuse: Mapping[Union[str, int], Union[str, int]] | None = None,
        *,
        target_assigner: Any = None,  # a ComponentSpec or None (Sphinx cannot render an alias in a union)
        loss: Any = None,
    ) -> SSDDetector:
        """A copy of this detector for other classes: its weights, with class heads reset (GluonCV's ``reset_class``).

        Every weight is copied but the class heads', which are new (the
        detector's initialisation) except the rows of the background and of
        the classes in ``reuse``, copied from this detector's: fine-tuning
        keeps the body, the extra layers and the box heads, and starts each
        reused class from what it has learnt. This detector is not changed.

        Parameters
        ----------
        classes : sequence of str
            The new classes.
        reuse : mapping, optional
            New class -> class of this detector whose rows it takes, by name or
            index (``{"person": "person"}``, ``{0: 14}``). Default: every class
            with the same name in both (GluonCV's ``transfer``); ``{}`` reuses
            none.
        target_assigner, loss : ComponentSpec, optional
            For training; default: this detector's.

        Raises
        ------
        InputError
            If ``classes`` are not valid, or ``reuse`` names a class or index that
            does not exist, or the detector is INT8.

        Examples
        --------
        >>> import mxnet as mx
        >>> from detkit import SSDDetector
        >>> detector = SSDDetector(classes=["cat", "dog", "person"], ctx=mx.cpu())
        >>> tuned = detector.with_classes(["person", "card"])    # "person" keeps its rows
        >>> tuned.classes, tuned.num_classes
        (['person', 'card'], 2)
        """
        if self._quantized is not None:
            raise InputError("An INT8 detector cannot be given other classes: load the float32 detector "
                             "(SSDDetector.load of the folder it was quantized from) and call with_classes on it.")
        classes = check_classes(classes)
        mapping = _class_mapping(self.classes, classes, reuse)
        specs: dict[str, Any] = {kind: self._specs[kind] for kind in KINDS}
        if target_assigner is not None:
            specs["target_assigner"] = target_assigner
        if loss is not None:
            specs["loss"] = loss
        copy = type(self)(classes, scale_filters=self.scale_filters, data_shape=self.data_shape, ctx=self.ctx,
                          hybridize=self.hybridized, **specs)
        self._materialize()
        copy._materialize()
        heads = {id(p) for p in self.network.class_heads.collect_params().values()}
        new_heads = {id(p) for p in copy.network.class_heads.collect_params().values()}
        mine = [p for p in self.network.collect_params().values() if id(p) not in heads]
        theirs = [p for p in copy.network.collect_params().values() if id(p) not in new_heads]
        for source, target in zip(mine, theirs):  # the same architecture: the same parameters, in order
            target.set_data(source.data(self.ctx))
        old_width, new_width = self.num_classes + 1, copy.num_classes + 1
        for old_head, new_head in zip(self.network.class_heads, copy.network.class_heads):
            for old, new in ((old_head.weight, new_head.weight), (old_head.bias, new_head.bias)):
                old_data, new_data = old.data(self.ctx).asnumpy(), new.data(copy.ctx).asnumpy()
                new_data[0::new_width] = old_data[0::old_width]  # the background of each anchor
                for new_id, old_id in mapping.items():  # rows a * (C + 1) + 1 + class of each anchor a
                    new_data[new_id + 1::new_width] = old_data[old_id + 1::old_width]
                new.set_data(mx.nd.array(new_data, dtype=new.dtype))
        return copy

    @property
    def precision(self) -> str:
        """``"float32"``, or ``"int8"`` for a detector made by :meth:`quantize` (inference only)."""
        return "float32" if self._quantized is None else "int8"

    # -- shapes --------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """The number of object classes ``C`` (the background is not counted)."""
        return len(self.classes)

    @property
    def min_input_size(self) -> int:
        """The smallest height and width the network can halve down to its last scale."""
        halvings = self.anchor_generator.num_scales - len(self.backbone.out_channels) - 1
        return int(self.backbone.min_input_size) * 2 ** max(halvings, 0)

    def check_images(self, images: Any) -> mx.nd.NDArray:
        """Return ``images`` as an NDArray on :attr:`ctx` after checking its shape ``(B, 3, H, W)``.

        Raises
        ------
        InputError
            If ``images`` is not 4-dimensional with 3 channels, or smaller than :attr:`min_input_size`.
        """
        if isinstance(images, np.ndarray):
            images = mx.nd.array(images, ctx=self.ctx, dtype="float32")
        if not isinstance(images, mx.nd.NDArray):
            raise InputError(
                f"The 'images' argument must be an NDArray or numpy array of shape (B, 3, H, W); "
                f"got {type(images).__name__} instead."
            )
        shape = images.shape
        if len(shape) != 4 or shape[1] != 3 or shape[0] < 1:
            raise InputError(f"The 'images' argument must have shape (B, 3, H, W) with B >= 1; got {shape} instead.")
        smallest = self.min_input_size
        if shape[2] < smallest or shape[3] < smallest:
            raise InputError(
                f"The 'images' argument must be at least {smallest}x{smallest} pixels for this network "
                f"(its last scale divides the input by {smallest}); got {shape[2]}x{shape[3]} instead."
            )
        if images.dtype != np.float32:
            images = images.astype("float32")
        return images.as_in_context(self.ctx)

    def _materialize(self) -> None:
        """Give deferred parameters their shapes (Gluon infers them on the first forward)."""
        try:
            for parameter in self.network.collect_params().values():
                parameter.data(self.ctx)
        except gluon.parameter.DeferredInitializationError:
            self.network(mx.nd.zeros((1, 3, *self.data_shape), ctx=self.ctx))

    # -- running ---------------------------------------------------------------------

    def __call__(self, images: Any) -> tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]:
        """Run the network on preprocessed images ``(B, 3, H, W)``.

        Returns
        -------
        anchors : NDArray ``(1, N, 4)``
        class_preds : NDArray ``(B, N, C + 1)``, raw scores
        box_preds : NDArray ``(B, N * 4)``, encoded offsets
        """
        return (self._quantized or self.network)(self.check_images(images))

    def detect(self, images: Any) -> mx.nd.NDArray:
        """Detections for preprocessed images ``(B, 3, H, W)``.

        Returns
        -------
        NDArray ``(B, K, 6)``
            Rows ``[class_id, score, xmin, ymin, xmax, ymax]`` with boxes normalised
            to [0, 1] of the input; ``class_id = -1`` for empty rows.
        """
        return self._inference(self.check_images(images))

    def predict(self, images: Any, threshold: float = 0.5, *, batch_size: int = 32) -> Any:
        """Detect objects in images given as files or arrays; boxes in pixels of each original image.

        Images go through the same preprocessing as validation data (resize to
        :attr:`data_shape`, minus :data:`detkit.data.RGB_MEAN`).

        Parameters
        ----------
        images : path, numpy.ndarray, mxnet.nd.NDArray, or a list of those
            Each a path to an image file, or an ``(H, W, 3)`` RGB array (values
            0-255; see :func:`detkit.load_image` for the other forms); a
            channels-last batch ``(B, H, W, 3)`` counts as a list of ``B`` images.
        threshold : float, default 0.5
            Keep detections scoring at least this.
        batch_size : int, default 32
            Images per forward pass.

        Returns
        -------
        list of Detection, or a list of such lists
            For one image, its detections, highest score first; for a list or
            a batch of images, one list per image.
        """
        return predict(self.detect, self.classes, self.data_shape, images, threshold, batch_size)

    def quantize(self, calibration_data: Any, *, num_batches: int = 4, batch_size: int = 32,
                 calibration: str = "naive") -> SSDDetector:
        """An INT8 copy of this detector for fast inference on the CPU, calibrated on a few batches of your images.

        The convolutions run in INT8 through MXNet's MKL-DNN backend (on CPUs with
        AVX-512 VNNI several times faster than fp32); anchors and post-processing stay
        in fp32. The copy predicts, evaluates, saves and loads like any detector
        (:attr:`precision` is ``"int8"``) but cannot be trained: train this one, then
        quantize again. This detector is left as it was.

        Parameters
        ----------
        calibration_data : DetectionDataset or list of NDArray
            Images like those the detector will see (the validation set does): a
            dataset, read through its validation pipeline, or preprocessed batches
            ``(B, 3, H, W)``.
        num_batches : int, default 4
            How many batches calibrate the value ranges.
        batch_size : int, default 32
        calibration : {"naive", "entropy"}, default "naive"
            ``"naive"``: each layer's range is the min/max seen; ``"entropy"``: the
            range that loses the least information (slower to calibrate).

        Raises
        ------
        InputError
            If the detector is not on the CPU, is already INT8, or the data is unusable.
        MissingDependencyError
            If this MXNet build lacks the MKL-DNN backend.
        """
        check_positive_int("num_batches", num_batches)
        check_positive_int("batch_size", batch_size)
        if self._quantized is not None:
            raise InputError("This detector is already INT8; quantize its float32 original instead.")
        require_int8(self.ctx)
        if calibration not in CALIBRATION_MODES:
            raise InputError(f"The 'calibration' argument must be one of {', '.join(CALIBRATION_MODES)}; "
                             f"got {calibration!r} instead.")
        batches = [self.check_images(b) for b in calibration_batches(calibration_data, self.data_shape,
                                                                       num_batches=num_batches, batch_size=batch_size)]
        if not batches:
            raise InputError("The calibration data gave no batch; give a dataset with images or a list of batches.")
        self._materialize()
        copy = SSDDetector(self.classes, scale_filters=self.scale_filters, data_shape=self.data_shape, ctx=self.ctx,
                           hybridize=self.hybridized, **{kind: spec for kind, spec in self._specs.items()})
        copy._materialize()
        # The same weights -- the network's and any a component has (a plugin's post-processor, say):
        # the copy has one structure, so the parameters pair up in order.
        for mine, theirs in [(self.network, copy.network)] + [
                (self._components[kind], copy._components[kind]) for kind in ("target_assigner", "loss", "post_processor")]:
            sources, targets = list(mine.collect_params().values()), list(theirs.collect_params().values())
            if len(sources) != len(targets):
                raise InputError("The detector's parameters do not pair up with its copy's; it cannot be quantized.")
            for source, target in zip(sources, targets):
                target.set_data(source.data(self.ctx))
        copy.network.hybridize(static_alloc=True)  # quantization reads the graph of a network that has run
        copy.network(batches[0])
        prefix = copy.anchor_generator.prefix  # anchors depend on shapes alone: keep them exact, in fp32
        quantized = quantize_network(copy.network, batches, exclude_prefixes=[prefix], calibration=calibration,
                                     ctx=self.ctx)
        copy._use_quantized(quantized)
        return copy

    def _use_quantized(self, network: gluon.SymbolBlock) -> None:
        self._quantized = network
        self._inference = _InferenceNetwork(network, self.post_processor)
        if self.hybridized:
            self._inference.hybridize(static_alloc=True)

    # -- configuration and persistence --------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The detector's full configuration: classes, components with their arguments and providers."""
        registry = get_registry()
        components = {}
        for kind, (name, kwargs) in self._specs.items():
            info = registry.get(kind, name)
            components[kind] = {
                "name": name,
                "kwargs": kwargs,
                "provided_by": {
                    "plugin": info.plugin,
                    "distribution": info.distribution,
                    "version": info.version,
                },
            }
        return {
            "format": DETECTOR_FORMAT,
            "precision": self.precision,
            "classes": list(self.classes),
            "scale_filters": self.scale_filters,
            "data_shape": list(self.data_shape),
            "components": components,
        }

    def save(self, directory: PathLike) -> Path:
        """Save the configuration (``detector.yaml``) and the weights (``network.params``) to ``directory``.

        The folder is written under its lock as one generation (see the
        reliability guide): every file is written beside the previous ones and
        the folder's manifest (``.detkit-manifest.json``) switches to the new
        set in one atomic step, so a save that is interrupted at any moment
        leaves the earlier detector loadable, two processes saving at once
        cannot mix their files, and files of yours in the folder are never
        replaced or removed (a name the save needs that holds a file of yours
        is refused). An INT8 detector also writes its quantized network
        (``network-int8-symbol.json`` and ``network-int8-0000.params``) beside
        the float32 weights it came from.

        Returns
        -------
        pathlib.Path
            The directory.

        Raises
        ------
        StorageError
            If another process saves into the folder, a name the save needs is a file detkit did
            not make, or the disk fails; the folder keeps what it held.
        """
        directory = Path(directory)
        self._materialize()
        config = self.get_config()
        config["detkit_version"] = distribution_version()
        checksums: dict[str, str] = {}  # of every weight file, checked by load
        with folder_generation(directory, "detector", purpose="saving a detector",
                               legacy=_legacy_detector_files) as generation:
            params = generation.path(_PARAMS_FILE)
            with storage_errors(directory / _PARAMS_FILE):
                self.network.save_parameters(str(params))
            checksums[_PARAMS_FILE] = file_sha256(params)
            for kind in ("target_assigner", "loss", "post_processor"):
                if list(self._components[kind].collect_params().keys()):  # an empty ParameterDict is truthy
                    extra = generation.path(f"{kind}.params")
                    with storage_errors(directory / extra.name):
                        self._components[kind].save_parameters(str(extra))
                    checksums[extra.name] = file_sha256(extra)
            if self._quantized is not None:
                # Gluon exports only a block whose own graph has run (a parent's hybridize() clears it).
                self._quantized.hybridize(static_alloc=True)
                self._quantized(mx.nd.zeros((1, 3, *self.data_shape), ctx=self.ctx))
                int8_files = [generation.path(f"{_INT8_PREFIX}{suffix}") for suffix in _EXPORT_SUFFIXES]
                _write_exported(self._quantized, int8_files)
                for written in int8_files:
                    checksums[written.name] = file_sha256(written)
            config["sha256"] = checksums
            generation.path(_CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: PathLike, *, ctx: mx.Context | None = None, hybridize: bool = True,
             **components: ComponentSpec) -> SSDDetector:
        """Rebuild a detector saved by :meth:`save`, on ``ctx`` (default: :func:`default_context`; the CPU for INT8).

        ``components``, by kind — ``target_assigner=``, ``loss=``, ``post_processor=`` —
        swap a saved component for another (the components without weights of their own in the network: the
        backbone and the anchor generator shape the weights and stay as saved). Each is
        a :data:`ComponentSpec`, or a mapping without ``"name"`` that changes only the
        saved component's arguments:

        >>> import detkit
        >>> detkit.SSDDetector(classes=["pikachu"], data_shape=64).save("saved")   # doctest: +ELLIPSIS
        PosixPath('saved')
        >>> detector = detkit.SSDDetector.load("saved", post_processor={"nms_threshold": 0.3})
        >>> detector.post_processor.nms_threshold
        0.3

        Raises
        ------
        CheckpointError
            If the directory holds no complete saved detector (the message says which
            file is missing, and names ``DIRECTORY/model`` when the detector is there).
        ComponentNotFoundError
            If a component is not registered; the message names its plugin's distribution and
            says whether it is not installed (the pip command) or installed but failed,
            incompatible or disabled (and why).
        """
        unknown = sorted(set(components) - set(_SWAPPABLE))
        if unknown:
            raise InputError(
                f"SSDDetector.load swaps only {', '.join(_SWAPPABLE)} (the components without weights in the "
                f"network); got {', '.join(unknown)}. The backbone and the anchor generator shape the saved weights."
            )
        directory = Path(directory)
        # Every file through one snapshot of the folder's manifest, again if a save came between (one generation).
        return read_consistent(directory, lambda snapshot: cls._load(snapshot, ctx, hybridize, components))

    @classmethod
    def _load(cls, snapshot: FolderSnapshot, ctx: mx.Context | None, hybridize: bool,
              components: Mapping[str, ComponentSpec]) -> SSDDetector:
        directory = snapshot.folder
        config_path = snapshot.path(_CONFIG_FILE)
        params_path = snapshot.path(_PARAMS_FILE)
        _check_saved_files(directory, config_path, params_path)
        config = read_detector_config(config_path)
        if not isinstance(config, dict) or config.get("format") != DETECTOR_FORMAT:
            raise CheckpointError(
                f"{config_path} is not a detkit detector configuration (expected format {DETECTOR_FORMAT!r}; "
                f"got {config.get('format') if isinstance(config, dict) else config!r})."
            )
        _check_saved_config(config, config_path)
        if ctx is None and config.get("precision") == "int8":
            ctx = mx.cpu()  # INT8 runs on the CPU only, wherever float32 would go
        registry = get_registry()
        specs: dict[str, Any] = {}
        for kind in KINDS:
            entry = config["components"][kind]
            try:
                registry.get(kind, entry["name"])
            except ComponentNotFoundError as error:
                raise ComponentNotFoundError(f"{error}{missing_component_hint(entry.get('provided_by'))}") from None
            specs[kind] = (entry["name"], entry.get("kwargs") or {})
        swaps = {kind: components.get(kind) for kind in _SWAPPABLE}
        for kind, swap in swaps.items():
            if swap is None:
                continue
            if isinstance(swap, Mapping) and "name" not in swap:  # the saved component, other arguments
                specs[kind] = (specs[kind][0], {**specs[kind][1], **swap})
            else:
                specs[kind] = swap
            if not isinstance(specs[kind], Component):  # the caller's arguments: their errors are InputErrors
                registry.build(kind, *parse_component_spec(kind, specs[kind]))
        try:
            detector = cls(
                config["classes"], scale_filters=config.get("scale_filters", DEFAULT_SCALE_FILTERS),
                data_shape=tuple(config.get("data_shape", (256, 256))), ctx=ctx, hybridize=hybridize, **specs
            )
        except InputError as error:
            if "'ctx'" in str(error) or "'hybridize'" in str(error):
                raise
            raise CheckpointError(f"{config_path} describes a detector that cannot be built: {error}") from None
        _check_sha256(directory, config.get("sha256"), config_path, snapshot)
        try:
            detector.network.load_parameters(str(params_path), ctx=detector.ctx)
            for kind in ("target_assigner", "loss", "post_processor"):
                extra = snapshot.path(f"{kind}.params")
                if extra.is_file() and swaps[kind] is None:  # a swapped component keeps its own
                    detector._components[kind].load_parameters(str(extra), ctx=detector.ctx)
        except (mx.base.MXNetError, AssertionError, ValueError) as error:
            raise CheckpointError(f"The weights in {params_path} do not fit the configuration: {error}") from error
        precision = config.get("precision", "float32")
        if precision == "int8":
            symbol_file, int8_params = (snapshot.path(f"{_INT8_PREFIX}{suffix}") for suffix in _EXPORT_SUFFIXES)
            if not symbol_file.is_file() or not int8_params.is_file():
                raise CheckpointError(
                    f"{directory} holds an INT8 detector without its quantized network ({symbol_file.name}, "
                    f"{int8_params.name}); save it again, or load the float32 detector and quantize it."
                )
            try:
                detector._use_quantized(import_quantized(symbol_file, int8_params, detector.ctx))
            except (mx.base.MXNetError, AssertionError, ValueError) as error:
                raise CheckpointError(f"The INT8 network in {directory} cannot be read: {error}") from error
        elif precision != "float32":
            raise CheckpointError(f"{config_path} gives the precision {precision!r}; detkit knows float32 and int8.")
        return detector

    def export(self, directory: PathLike, data_shape: int | Sequence[int] | None = None, *,
               format: str = "mxnet") -> tuple[Path, Path]:
        """Write a deployable graph, images -> detections, that runs without detkit's network code.

        Both formats take preprocessed images ``(B, 3, H, W)`` (resized to
        ``data_shape``, minus :data:`detkit.data.RGB_MEAN`; any batch size) and
        return detections ``(B, K, 6)`` as :meth:`detect` does, beside a
        ``detector.json`` that describes them (classes, input shape, mean, output layout).

        ``format="mxnet"`` writes ``detector-symbol.json`` and ``detector-0000.params``;
        load them with ``mxnet.gluon.SymbolBlock.imports(symbol, ["data"], params)``.

        ``format="onnx"`` writes one ONNX graph, ``detector.onnx``: the network body
        exported by MXNet's exporter, the anchors for ``data_shape`` as a constant,
        and the post-processor's decoding, top-K and non-maximum suppression as
        standard ONNX operators (:meth:`~detkit.interfaces.PostProcessor.export_onnx`).
        Its detections hold the kept rows first, highest score first, then rows of
        ``-1``. ``detector.json`` also records the ONNX opset and the versions of
        detkit, MXNet and onnx that wrote it. Run it with ONNX Runtime
        (:class:`detkit.OnnxDetector`) or any ONNX runtime; needs the ``onnx``
        extra (``pip install -e ".[onnx]"`` in a checkout). Each file is written
        atomically, ``detector.json`` last.

        Parameters
        ----------
        directory : path
            Where to write the files (created if needed).
        data_shape : int or (int, int), optional
            The input size; default: :attr:`data_shape`.
        format : {"mxnet", "onnx"}, default "mxnet"

        Returns
        -------
        (pathlib.Path, pathlib.Path)
            The symbol file and the parameters file (``"mxnet"``), or the ONNX graph
            and ``detector.json`` (``"onnx"``).

        Raises
        ------
        ExportError
            For ``"onnx"``: a component that cannot be exported (the message names it
            and its distribution), or an INT8 detector (quantize the ONNX graph instead).
        MissingDependencyError
            For ``"onnx"`` without the ``onnx`` package.
        """
        if format not in ("mxnet", "onnx"):
            raise InputError(f"The 'format' argument must be 'mxnet' or 'onnx'; got {format!r} instead.")
        height, width = self.data_shape if data_shape is None else check_size("data_shape", data_shape)
        if min(height, width) < self.min_input_size:
            raise InputError(f"The 'data_shape' argument must be at least {self.min_input_size} on each side for "
                             f"this network; got {(height, width)} instead.")
        directory = Path(directory)
        if format == "onnx":
            return export_onnx(self, directory, height, width)
        make_dirs(directory)
        block = _InferenceNetwork(self._quantized or self.network, self.post_processor)
        block.hybridize(static_alloc=True)
        block(self.check_images(mx.nd.zeros((1, 3, height, width), ctx=self.ctx)))
        prefix = directory / _EXPORT_PREFIX
        _write_exported(block, [Path(f"{prefix}{suffix}") for suffix in _EXPORT_SUFFIXES])
        if self.hybridized:  # hybridize() above re-planned the shared children; restore our graphs
            self._inference.hybridize(static_alloc=True)
        else:
            self._inference.hybridize(active=False)
        atomic_write_text(directory / f"{_EXPORT_PREFIX}.json", json.dumps({
            "classes": list(self.classes),
            "input_name": "data",
            "data_shape": [3, height, width],
            "rgb_mean": list(RGB_MEAN),
            "output": "detections (B, K, 6): class_id, score, xmin, ymin, xmax, ymax; boxes in [0, 1]",
        }, indent=2))
        return Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")

    def __repr__(self) -> str:
        parts = ", ".join(f"{kind}={name!r}" for kind, (name, _) in self._specs.items())
        return f"SSDDetector(classes={self.classes!r}, {parts}, ctx={self.ctx})"


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of the file ``path``, as hex digits."""
    return file_digest(path, "sha256")


def check_saved_weights(directory: PathLike, snapshot: FolderSnapshot | None = None) -> None:
    """Refuse the weight files of a saved detector (or checkpoint) that differ from their recorded SHA-256.

    ``snapshot``: the one snapshot of ``directory`` a caller reads the weights through (else one of this call's own).
    """
    def check(snapshot: FolderSnapshot) -> None:
        config_path = snapshot.path(_CONFIG_FILE)
        config = read_detector_config(config_path)
        _check_sha256(snapshot.folder, config.get("sha256"), config_path, snapshot)

    if snapshot is not None:
        check(snapshot)
    else:
        read_consistent(directory, check)


def read_detector_config(config_path: Path) -> dict[str, Any]:
    """The ``detector.yaml`` at ``config_path``, read as data (nesting bounded) and checked to be a detector's."""
    try:
        config = load_yaml(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CheckpointError(f"{config_path} is not valid YAML: {error}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_path} cannot be read as UTF-8 text: {error}") from None
    except ValueError as error:
        raise CheckpointError(f"{config_path} is not a saved detector configuration: {error}; save the "
                              "detector again.") from None
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{config_path} is not a detkit detector configuration (expected format {DETECTOR_FORMAT!r}; "
            f"got {config!r})."
        )
    return config


def _legacy_detector_files(directory: Path) -> list[str]:
    """The files that an earlier detkit's save left in ``directory`` (no manifest), known by their checksums."""
    config_path = directory / _CONFIG_FILE
    try:
        config = read_detector_config(config_path) if config_path.is_file() else None
    except CheckpointError:
        return []
    if config is None or config.get("format") != DETECTOR_FORMAT:
        return []
    checksums = config.get("sha256")
    names = [_CONFIG_FILE]
    if not isinstance(checksums, dict):
        return names + [_PARAMS_FILE] if (directory / _PARAMS_FILE).is_file() else names
    for name, expected in checksums.items():
        path = directory / str(name)
        try:
            if Path(str(name)).name == name and path.is_file() and file_sha256(path) == str(expected).lower():
                names.append(name)
        except OSError:
            continue
    return names


def _check_sha256(directory: Path, checksums: Any, config_path: Path, snapshot: FolderSnapshot) -> None:
    """Refuse a weight file whose SHA-256 differs from the one ``detector.yaml`` recorded at save.

    Detectors saved before checksums were recorded have none and load as they are.
    """
    if checksums is None:
        if owned_files(directory) is not None:  # saved with a manifest: always with checksums
            raise CheckpointError(f"{config_path} is not a valid saved detector: it has no 'sha256' of its "
                                  "weights. Save the detector again.")
        return
    if not isinstance(checksums, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and Path(k).name == k and k.endswith((".params", "-symbol.json"))
            for k, v in checksums.items()):
        raise CheckpointError(f"{config_path} is not a valid saved detector: 'sha256' must map weight files to "
                              "their SHA-256.")
    for name, expected in checksums.items():
        path = snapshot.path(name)
        if not path.is_file():  # missing, or a pipe that would block the read
            raise CheckpointError(f"The weights {path} that {config_path.name} lists are missing or not a file.")
        try:
            actual = file_sha256(path)
        except OSError as error:
            raise CheckpointError(f"The weights {path} cannot be read: {error.strerror or error}") from None
        if actual != expected.lower():
            raise CheckpointError(
                f"The weights {path} are damaged: their SHA-256 differs from the one {config_path.name} recorded "
                "when they were saved (or a save into this folder was interrupted). Restore them from a good "
                "copy, or save the detector again."
            )


def _check_saved_files(directory: Path, config_path: Path, params_path: Path) -> None:
    """A CheckpointError that says which file of a saved detector is missing, and where the detector may be."""
    if config_path.is_file() and params_path.is_file():
        return
    if not directory.is_dir():
        raise CheckpointError(f"{directory} does not exist: pass the folder that SSDDetector.save (or detkit train's "
                              "model/) wrote.")
    if not config_path.is_file():
        inside = [sub for sub in ("model", "int8") if (directory / sub / _CONFIG_FILE).is_file()]
        hint = (f" It holds a training's output: pass {directory / inside[0]}, the detector inside it."
                if inside else " Pass the folder that SSDDetector.save (or detkit train's model/) wrote.")
        raise CheckpointError(f"{directory} holds no saved detector: {_CONFIG_FILE} is missing.{hint}")
    raise CheckpointError(
        f"{directory} has the detector's {_CONFIG_FILE} but not its weights, {_PARAMS_FILE}: the save was "
        "interrupted or the file was removed. Save the detector again, or copy the whole folder back."
    )


def _check_saved_config(config: dict[str, Any], path: Path) -> None:
    """Raise :class:`CheckpointError` naming ``path`` and the key unless ``config`` has the keys load needs."""
    def bad(key: str, wanted: str) -> CheckpointError:
        value = config.get(key, "nothing") if "." not in key else "a wrong value"
        return CheckpointError(
            f"{path} is not a valid saved detector: '{key}' must be {wanted}; got {value!r}. "
            "Restore the file from SSDDetector.save, or save the detector again."
        )

    classes = config.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a list of class names")
    if "scale_filters" in config and (not isinstance(config["scale_filters"], int)
                                      or isinstance(config["scale_filters"], bool)):
        raise bad("scale_filters", "an int")
    shape = config.get("data_shape", [256, 256])
    if not isinstance(shape, list) or len(shape) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in shape):
        raise bad("data_shape", "[height, width]")
    components = config.get("components")
    if not isinstance(components, dict):
        raise bad("components", "a mapping of the five component kinds")
    for kind in KINDS:
        entry = components.get(kind)
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise bad(f"components.{kind}", "a mapping with a 'name'")
        if not isinstance(entry.get("kwargs") or {}, dict) or not isinstance(entry.get("provided_by") or {}, dict):
            raise bad(f"components.{kind}", "a mapping whose 'kwargs' and 'provided_by' are mappings")


def _class_mapping(old: Sequence[str], new: Sequence[str], reuse: Any) -> dict[int, int]:
    """``reuse`` as new class index -> old class index (default: the classes of the same name)."""
    if reuse is None:
        return {new.index(name): old.index(name) for name in new if name in old}
    if not isinstance(reuse, Mapping):
        raise InputError(f"The 'reuse' argument must map new classes to old ones (names or indices); "
                         f"got {reuse!r} instead.")

    def index(value: Any, names: Sequence[str], which: str) -> int:
        if isinstance(value, str) and value in names:
            return list(names).index(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            return value
        raise InputError(f"The 'reuse' argument names {value!r}, which is not one of the {which} classes "
                         f"{list(names)} (a name or an index from 0).")

    return {index(k, new, "new"): index(v, old, "detector's") for k, v in reuse.items()}


def build_component_spec(kind: str, spec: Any) -> tuple[Component, tuple[str, dict[str, Any]]]:
    """Build a component from its spec; return it and its ``(name, kwargs)``."""
    interface, _ = check_kind(kind)
    registry = get_registry()
    if isinstance(spec, Component):
        if not isinstance(spec, interface):
            raise InputError(
                f"The '{kind}' argument must implement {interface.__qualname__}; got a {type(spec).__qualname__} instead."
            )
        info = registry.find(kind, spec)
        if info is None:
            raise InputError(
                f"The '{kind}' argument is a {type(spec).__qualname__}, which no plugin registers, so the "
                "detector could not be saved or rebuilt; register it with a plugin "
                "(see detkit.register_plugin) or pass a registered name."
            )
        return spec, (info.name, spec.get_config())
    name, kwargs = parse_component_spec(kind, spec)
    component = registry.build(kind, name, kwargs)
    return component, (name, component.get_config())


def _write_exported(block: gluon.HybridBlock, files: Sequence[Path]) -> None:
    """``block.export`` into ``files`` (the symbol, the parameters), each written atomically.

    MXNet writes both files itself, under names of its own: into a scratch folder, then each moved.
    """
    with scratch_folder(files[0].parent) as scratch, atomic_outputs(list(files)) as staged:
        with storage_errors(files[0]):
            block.export(str(scratch / "block"))
        for suffix, target in zip(_EXPORT_SUFFIXES, staged):
            os.replace(scratch / f"block{suffix}", target)
