"""ResNet bodies of the Gluon model zoo, cut into stages that return multi-scale feature maps."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import model_store, vision

import detkit
from detkit.errors import InputError
from detkit.interfaces import Backbone

#: The depths of the model zoo's ResNets.
DEPTHS = (18, 34, 50, 101, 152)
#: ResNet v1 (He et al., 2015) and v2, pre-activation (He et al., 2016).
VERSIONS = (1, 2)

# Output channels of stages 1-4: basic blocks for 18 and 34 layers, bottlenecks
# (4x expansion) from 50 on (the model zoo's ``resnet_spec``).
_STAGE_CHANNELS = {18: (64, 128, 256, 512), 34: (64, 128, 256, 512)}
_STAGE_CHANNELS.update({depth: (256, 512, 1024, 2048) for depth in (50, 101, 152)})
# Stage s (1-4) has stride 2 ** (s + 1): the stem divides by 4, stages 2-4 halve once each.
_STAGE_STRIDES = (4, 8, 16, 32)
# How many of the model zoo's ``features`` blocks come before stage 1:
# v1: conv7x7, BN, ReLU, max-pool; v2 adds a data BatchNorm (no scale, no shift) in front.
_STEM_BLOCKS = {1: 4, 2: 5}


class ResNetBackbone(Backbone):
    """A model zoo ResNet without its classifier, returning the maps of chosen stages.

    The body is the model zoo's ``features`` cut after each of its four
    stages; the stages listed in ``stages`` give the feature maps, highest
    resolution first. The default, stages 2, 3 and 4, gives strides 8, 16 and
    32: a ``(B, 3, 256, 256)`` batch gives ``(B, c, 32, 32)``, ``(B, c', 16, 16)``
    and ``(B, c'', 8, 8)`` (``c`` = 128, 256, 512 for ResNet-18 and -34, and
    512, 1024, 2048 from ResNet-50 on). The detector adds its own halving blocks
    and a global max-pool after the last map until it has one map per anchor
    scale: with the default 5 scales the smallest input is 64 x 64.

    For v2 (pre-activation) the map of stage 4 goes through the model's final
    BatchNorm and ReLU, as in the classifier; the maps of earlier stages are the
    stages' raw (pre-activation) outputs.

    The body starts with :class:`detkit.ImageNetInput`, which turns detkit's
    input (RGB minus :data:`detkit.data.RGB_MEAN`, 0-255) into the ImageNet
    normalisation the model zoo's weights were trained on; always, so that the
    architecture does not depend on where the initial weights come from.

    Weights are random (the detector's Xavier initialisation) unless
    ``pretrained`` or ``weights`` is given. They are then read (or downloaded)
    when the parameters are first initialised — by the detector's constructor —
    not when the backbone is built: checking a configuration reads nothing
    (:func:`detkit.initialize_pretrained`).

    Parameters
    ----------
    depth : int, default 18
        18, 34, 50, 101 or 152.
    version : int, default 1
        1 (He et al., 2015) or 2 (pre-activation, He et al., 2016).
    stages : sequence of int, default (2, 3, 4)
        The stages (1-4, strides 4, 8, 16, 32) whose outputs are returned, increasing.
    pretrained : bool, default False
        Start from the ImageNet weights of MXNet's model store: the file
        ``resnet{depth}_v{version}-<hash>.params`` in ``root``, downloaded there
        if missing (which needs network access) when the parameters are
        initialised; see :func:`detkit.pretrained_parameters`.
    weights : str or os.PathLike, optional
        A ``.params`` file of the model zoo network (``net.save_parameters``), such
        as the model store's file copied from a machine with network access;
        implies ``pretrained``.
    root : str or os.PathLike, optional
        The model store directory; default ``$MXNET_HOME/models`` (``~/.mxnet/models``).

    Raises
    ------
    InputError
        If an argument is out of range or ``weights`` does not exist; when the
        parameters are initialised, if ``weights`` does not fit the network.
    DownloadError
        When the parameters are initialised, if ``pretrained`` and the weights are
        neither in ``root`` nor downloadable; the message says which file to put where.

    Notes
    -----
    :meth:`get_config` records the architecture (``depth``, ``version``,
    ``stages``) but not where the initial weights came from: a saved detector
    carries its own trained weights, so rebuilding it must not need the
    ImageNet file.
    """

    def __init__(
        self,
        depth: int = 18,
        version: int = 1,
        stages: Sequence[int] = (2, 3, 4),
        pretrained: bool = False,
        weights: Optional[str | os.PathLike[str]] = None,
        root: Optional[str | os.PathLike[str]] = None,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS or isinstance(depth, bool):
            raise InputError(f"The 'depth' argument of ResNetBackbone must be one of {DEPTHS}; got {depth!r} instead.")
        if version not in VERSIONS or isinstance(version, bool):
            raise InputError(f"The 'version' argument of ResNetBackbone must be 1 or 2; got {version!r} instead.")
        stages = list(stages) if isinstance(stages, (list, tuple)) else stages
        if (
            not isinstance(stages, list)
            or not stages
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4 for s in stages)
            or stages != sorted(set(stages))
        ):
            raise InputError(
                "The 'stages' argument of ResNetBackbone must be increasing stage numbers from 1 to 4, "
                f"such as [2, 3, 4]; got {stages!r} instead."
            )
        self.depth = int(depth)
        self.version = int(version)
        self.stages = [int(s) for s in stages]
        self.pretrained = bool(pretrained or weights is not None)
        self.weights = weights
        self.root = root

        network = vision.get_resnet(self.version, self.depth)
        if self.pretrained:  # read when the detector initialises the parameters, not now
            detkit.initialize_pretrained(network, self.model_name, weights=weights, root=root)
        features = network.features
        stem = _STEM_BLOCKS[self.version]
        with self.name_scope():
            self.input = detkit.ImageNetInput()
            self.stem = nn.HybridSequential()
            for index in range(stem):
                self.stem.add(features[index])
            # Only the stages up to the last one used: unused blocks would get no gradient.
            self.body = nn.HybridSequential()
            for index in range(self.stages[-1]):
                self.body.add(features[stem + index])
            self.head = nn.HybridSequential()
            if self.version == 2 and self.stages[-1] == 4:
                self.head.add(features[stem + 4], features[stem + 5])  # the final BatchNorm and ReLU

    @property
    def model_name(self) -> str:
        """The model zoo's name of the network, such as ``"resnet18_v1"``."""
        return f"resnet{self.depth}_v{self.version}"

    @property
    def out_channels(self) -> Sequence[int]:
        return tuple(_STAGE_CHANNELS[self.depth][s - 1] for s in self.stages)

    @property
    def out_strides(self) -> Sequence[int]:
        return tuple(_STAGE_STRIDES[s - 1] for s in self.stages)

    def get_config(self) -> dict[str, Any]:
        """``depth``, ``version`` and ``stages``; not the initial weights (see the class notes)."""
        return {"depth": self.depth, "version": self.version, "stages": list(self.stages)}

    def hybrid_forward(self, F: Any, x: Any) -> list[Any]:
        x = self.stem(self.input(x))  # (B, 64, H/4, W/4)
        outputs = []
        for number in range(1, len(self.body) + 1):
            x = self.body[number - 1](x)  # (B, channels of stage number, H/s, W/s)
            if number in self.stages:
                outputs.append(self.head(x) if number == 4 and len(self.head) else x)
        return outputs


def _variant(depth: int, version: int) -> type[ResNetBackbone]:
    """A subclass with a fixed depth and version, registered as ``resnet{depth}_v{version}``."""

    def __init__(
        self: ResNetBackbone,
        stages: Sequence[int] = (2, 3, 4),
        pretrained: bool = False,
        weights: Optional[str | os.PathLike[str]] = None,
        root: Optional[str | os.PathLike[str]] = None,
    ) -> None:
        ResNetBackbone.__init__(self, depth, version, stages, pretrained, weights, root)

    def get_config(self: ResNetBackbone) -> dict[str, Any]:
        return {"stages": list(self.stages)}

    name = f"ResNet{depth}V{version}"
    __init__.__qualname__ = f"{name}.__init__"
    get_config.__qualname__ = f"{name}.get_config"
    get_config.__doc__ = "``stages``; not the initial weights (see :class:`ResNetBackbone`)."
    return type(name, (ResNetBackbone,), {
        "__init__": __init__,
        "get_config": get_config,
        "__module__": "detkit_resnet",
        "__qualname__": name,
        "__doc__": (
            f"ResNet-{depth} v{version} (``resnet{depth}_v{version}``): :class:`ResNetBackbone` with "
            f"``depth={depth}, version={version}``; the other arguments are the same."
        ),
    })


ResNet18V1 = _variant(18, 1)
ResNet34V1 = _variant(34, 1)
ResNet50V1 = _variant(50, 1)
ResNet101V1 = _variant(101, 1)
ResNet152V1 = _variant(152, 1)
ResNet18V2 = _variant(18, 2)
ResNet34V2 = _variant(34, 2)
ResNet50V2 = _variant(50, 2)
ResNet101V2 = _variant(101, 2)
ResNet152V2 = _variant(152, 2)


def model_store_file(name: str, root: Optional[str | os.PathLike[str]] = None) -> str:
    """Where MXNet's model store keeps the ImageNet weights of ``name`` (``"resnet18_v1"``)."""
    root = os.path.expanduser(os.fspath(root)) if root is not None else os.path.join(mx.base.data_dir(), "models")
    return os.path.join(root, f"{name}-{model_store.short_hash(name)}.params")

