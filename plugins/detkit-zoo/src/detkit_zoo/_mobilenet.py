"""MobileNet v1 and v2 bodies of the Gluon model zoo, cut into stages that return multi-scale feature maps."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import detkit
from detkit.errors import InputError
from detkit.interfaces import Backbone
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

#: The width multipliers of the model zoo's MobileNets (each has ImageNet weights).
MULTIPLIERS = (0.25, 0.5, 0.75, 1.0)
#: MobileNet v1 (Howard et al., 2017) and v2, inverted residuals (Sandler et al., 2018).
VERSIONS = (1, 2)

# Stage s (1-4) has stride 2 ** (s + 1), as the ResNets' stages.
_STAGE_STRIDES = (4, 8, 16, 32)
# Where each stage ends in the model zoo's ``features`` (exclusive indices); both start with a
# stride-2 stem of 3 blocks (convolution, BatchNorm, ReLU).
# v1: 13 depthwise-separable blocks of 6 layers each, the last of each stride ending a stage
#     (blocks 3, 5, 11 and 13: index 3 + 6 * block).
# v2: 17 bottlenecks of one block each (index 2 + bottleneck: 3, 6, 13 and 17), and after the
#     last the 1x1 convolution to 1280 channels (3 blocks), as SSDLite (Sandler et al., 2018) uses it.
_STAGE_ENDS = {1: (21, 33, 69, 81), 2: (6, 9, 16, 23)}
# Channels at each stage end before the width multiplier (the model zoo's int(channels * multiplier));
# v2's last 1x1 convolution keeps 1280 channels for multipliers up to 1.
_STAGE_CHANNELS = {1: (128, 256, 512, 1024), 2: (24, 32, 96, 1280)}
_STEM_BLOCKS = 3


def model_store_name(multiplier: float, version: int) -> str:
    """The model store's name of a MobileNet: ``"mobilenet0.25"``, ``"mobilenetv2_1.0"``, ..."""
    suffix = f"{multiplier:.2f}"
    if suffix in ("1.00", "0.50"):
        suffix = suffix[:-1]
    return f"mobilenet{suffix}" if version == 1 else f"mobilenetv2_{suffix}"


class MobileNetBackbone(Backbone):
    """A model zoo MobileNet without its classifier, returning the maps of chosen stages.

    The body is the model zoo's ``features`` cut where the stride doubles; the
    stages listed in ``stages`` give the feature maps, highest resolution first.
    The default, stages 2, 3 and 4, gives strides 8, 16 and 32: a
    ``(B, 3, 256, 256)`` batch gives ``(B, c, 32, 32)``, ``(B, c', 16, 16)`` and
    ``(B, c'', 8, 8)``, with ``(c, c', c'')`` = 256, 512, 1024 times the
    multiplier for v1 and 32, 96 times the multiplier and 1280 for v2 (see
    :attr:`out_channels`). The detector adds its own halving blocks and a
    global max-pool after the last map until it has one map per anchor scale:
    with the default 5 scales the smallest input is 64 x 64.

    v1's maps are the outputs of the last depthwise-separable block of each
    stride (ReLU). v2's are the outputs of the last inverted-residual bottleneck
    of each stride (linear), except at stride 32, where the map is the final
    1 x 1 convolution to 1280 channels (ReLU6) as in SSDLite.

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
    multiplier : float, default 1.0
        The width multiplier: 0.25, 0.5, 0.75 or 1.0.
    version : int, default 1
        1 (Howard et al., 2017) or 2 (Sandler et al., 2018).
    stages : sequence of int, default (2, 3, 4)
        The stages (1-4, strides 4, 8, 16, 32) whose outputs are returned, increasing.
    pretrained : bool, default False
        Start from the ImageNet weights of MXNet's model store: the file
        ``mobilenet0.25-<hash>.params`` (``mobilenetv2_0.25-...`` for v2) in ``root``,
        downloaded there if missing (which needs network access) when the
        parameters are initialised; see :func:`detkit.pretrained_parameters`.
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
    :meth:`get_config` records the architecture (``multiplier``, ``version``,
    ``stages``) but not where the initial weights came from: a saved detector
    carries its own trained weights, so rebuilding it must not need the
    ImageNet file.
    """

    def __init__(
        self,
        multiplier: float = 1.0,
        version: int = 1,
        stages: Sequence[int] = (2, 3, 4),
        pretrained: bool = False,
        weights: Optional[str | os.PathLike[str]] = None,
        root: Optional[str | os.PathLike[str]] = None,
    ) -> None:
        super().__init__()
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or multiplier not in MULTIPLIERS:
            raise InputError(
                f"The 'multiplier' argument of MobileNetBackbone must be one of {MULTIPLIERS}; "
                f"got {multiplier!r} instead."
            )
        if version not in VERSIONS or isinstance(version, bool):
            raise InputError(f"The 'version' argument of MobileNetBackbone must be 1 or 2; got {version!r} instead.")
        stages = list(stages) if isinstance(stages, (list, tuple)) else stages
        if (
            not isinstance(stages, list)
            or not stages
            or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4 for s in stages)
            or stages != sorted(set(stages))
        ):
            raise InputError(
                "The 'stages' argument of MobileNetBackbone must be increasing stage numbers from 1 to 4, "
                f"such as [2, 3, 4]; got {stages!r} instead."
            )
        self.multiplier = float(multiplier)
        self.version = int(version)
        self.stages = [int(s) for s in stages]
        self.pretrained = bool(pretrained or weights is not None)
        self.weights = weights
        self.root = root

        network = (vision.get_mobilenet if self.version == 1 else vision.get_mobilenet_v2)(self.multiplier)
        if self.pretrained:  # read when the detector initialises the parameters, not now
            detkit.initialize_pretrained(network, self.model_name, weights=weights, root=root)
        features = network.features
        ends = _STAGE_ENDS[self.version]
        with self.name_scope():
            self.input = detkit.ImageNetInput()
            self.stem = nn.HybridSequential()
            for index in range(_STEM_BLOCKS):
                self.stem.add(features[index])
            # Only the stages up to the last one used: unused blocks would get no gradient.
            self.body = nn.HybridSequential()
            start = _STEM_BLOCKS
            for end in ends[: self.stages[-1]]:
                stage = nn.HybridSequential()
                for index in range(start, end):
                    stage.add(features[index])
                self.body.add(stage)
                start = end

    @property
    def model_name(self) -> str:
        """The model store's name of the network, such as ``"mobilenet0.25"`` or ``"mobilenetv2_1.0"``."""
        return model_store_name(self.multiplier, self.version)

    @property
    def out_channels(self) -> Sequence[int]:
        channels = [int(c * self.multiplier) for c in _STAGE_CHANNELS[self.version]]
        if self.version == 2:
            channels[3] = 1280  # int(1280 * multiplier) only above 1 (the model zoo's rule)
        return tuple(channels[s - 1] for s in self.stages)

    @property
    def out_strides(self) -> Sequence[int]:
        return tuple(_STAGE_STRIDES[s - 1] for s in self.stages)

    def get_config(self) -> dict[str, Any]:
        """``multiplier``, ``version`` and ``stages``; not the initial weights (see the class notes)."""
        return {"multiplier": self.multiplier, "version": self.version, "stages": list(self.stages)}

    def hybrid_forward(self, F: Any, x: Any) -> list[Any]:
        x = self.stem(self.input(x))  # (B, 32 * multiplier, H/2, W/2)
        outputs = []
        for number in range(1, len(self.body) + 1):
            x = self.body[number - 1](x)  # (B, channels of stage number, H/s, W/s), s = 2 ** (number + 1)
            if number in self.stages:
                outputs.append(x)
        return outputs


def _variant(multiplier: float, version: int) -> type[MobileNetBackbone]:
    """A subclass with a fixed multiplier and version, registered as ``mobilenet0_25``, ``mobilenetv2_1_0``, ..."""

    def __init__(
        self: MobileNetBackbone,
        stages: Sequence[int] = (2, 3, 4),
        pretrained: bool = False,
        weights: Optional[str | os.PathLike[str]] = None,
        root: Optional[str | os.PathLike[str]] = None,
    ) -> None:
        MobileNetBackbone.__init__(self, multiplier, version, stages, pretrained, weights, root)

    def get_config(self: MobileNetBackbone) -> dict[str, Any]:
        return {"stages": list(self.stages)}

    store = model_store_name(multiplier, version)
    width = store.replace("mobilenetv2_", "").replace("mobilenet", "").replace(".", "_")
    name = f"MobileNet{'V2_' if version == 2 else ''}{width}"
    __init__.__qualname__ = f"{name}.__init__"
    get_config.__qualname__ = f"{name}.get_config"
    get_config.__doc__ = "``stages``; not the initial weights (see :class:`MobileNetBackbone`)."
    return type(name, (MobileNetBackbone,), {
        "__init__": __init__,
        "get_config": get_config,
        "__module__": "detkit_zoo",
        "__qualname__": name,
        "__doc__": (
            f"MobileNet v{version}, width {multiplier} (``{registered_name(multiplier, version)}``, the model "
            f"store's ``{store}``): :class:`MobileNetBackbone` with ``multiplier={multiplier}, version={version}``; "
            "the other arguments are the same."
        ),
    })


def registered_name(multiplier: float, version: int) -> str:
    """The name a MobileNet is registered under: the model store's with ``_`` for ``.`` (``mobilenetv2_0_25``)."""
    return model_store_name(multiplier, version).replace(".", "_")


MobileNet0_25 = _variant(0.25, 1)
MobileNet0_5 = _variant(0.5, 1)
MobileNet0_75 = _variant(0.75, 1)
MobileNet1_0 = _variant(1.0, 1)
MobileNetV2_0_25 = _variant(0.25, 2)
MobileNetV2_0_5 = _variant(0.5, 2)
MobileNetV2_0_75 = _variant(0.75, 2)
MobileNetV2_1_0 = _variant(1.0, 2)
