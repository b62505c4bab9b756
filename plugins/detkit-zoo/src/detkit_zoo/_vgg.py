"""VGG-16 as the SSD paper used it: atrous fc6 and fc7 as convolutions, conv4_3 L2-normalised."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import detkit
import mxnet as mx
from detkit.interfaces import Backbone
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

# The model zoo's vgg16 ``features``: 13 convolutions, each followed by a ReLU, in five groups of
# 2, 2, 3, 3, 3 closed by a 2x2 max-pool (indices 4, 9, 16, 23, 30), then fc6 and fc7 (Dense
# 4096 with ReLU, each followed by Dropout) and the classifier ``output``.
_CONV4_3_END = 23  # conv1_1 ... conv4_3 and its ReLU: indices 0-22 (stride 8 after three pools)
_CONV5_3_END = 30  # pool4, conv5_1 ... conv5_3 and its ReLU: indices 23-29 (stride 16)
_POOLS = (4, 9, 16, 23)
#: The initial scale of the L2-normalised conv4_3 (Liu et al., 2016, section 3.1, after ParseNet).
CONV4_3_SCALE = 20.0


def reduce_fc_layers(
    fc6_weight: Any, fc6_bias: Any, fc7_weight: Any, fc7_bias: Any, *, kernel: int = 7
) -> dict[str, mx.nd.NDArray]:
    """The SSD paper's fc6 and fc7 convolutions from VGG-16's dense fc6 and fc7 (Liu et al., 2016, 3.1).

    As the paper's Caffe model (after DeepLab's "atrous" VGG), fc6 and fc7 are
    subsampled: every 4th output unit (4096 -> 1024), and fc6's 7 x 7 spatial
    window at the taps 0, 3 and 6 of each axis, which a 3 x 3 convolution with
    dilation 6 (``pool5`` with stride 1 instead of 2 halves the step, so 3 -> 6)
    reads at the same relative positions; fc7 keeps the inputs matching fc6's
    kept outputs.

    Parameters
    ----------
    fc6_weight : NDArray or numpy.ndarray, shape (U, C * kernel * kernel)
        The dense fc6 on the flattened ``(C, kernel, kernel)`` pool5 map (VGG-16:
        ``(4096, 512 * 7 * 7)``, channel-major as Gluon's ``Flatten``).
    fc6_bias : shape (U,)
    fc7_weight : shape (U, U)
    fc7_bias : shape (U,)
    kernel : int, default 7
        The side of fc6's spatial window; it must be 7 (taps 0, 3, 6) for VGG-16.

    Returns
    -------
    dict of str to mxnet.nd.NDArray
        ``fc6_weight`` ``(U/4, C, 3, 3)``, ``fc6_bias`` ``(U/4,)``, ``fc7_weight``
        ``(U/4, U/4, 1, 1)``, ``fc7_bias`` ``(U/4,)``; VGG-16: U/4 = 1024, C = 512.
    """
    fc6 = _numpy(fc6_weight)
    units = fc6.shape[0]
    channels = fc6.shape[1] // (kernel * kernel)
    if fc6.shape[1] != channels * kernel * kernel or units % 4:
        raise detkit.errors.InputError(
            f"The fc6 weight must have the shape (U, C * {kernel} * {kernel}) with U a multiple of 4; "
            f"got {fc6.shape} instead."
        )
    taps = list(range(0, kernel, 3))  # 0, 3, 6
    fc6 = fc6.reshape(units, channels, kernel, kernel)  # (U, C, 7, 7)
    fc6 = fc6[::4][:, :, taps][:, :, :, taps]  # (U/4, C, 3, 3)
    fc7 = _numpy(fc7_weight)[::4, ::4]  # (U/4, U/4)
    return {
        "fc6_weight": mx.nd.array(fc6),
        "fc6_bias": mx.nd.array(_numpy(fc6_bias)[::4]),
        "fc7_weight": mx.nd.array(fc7.reshape(fc7.shape + (1, 1))),  # (U/4, U/4, 1, 1)
        "fc7_bias": mx.nd.array(_numpy(fc7_bias)[::4]),
    }


def _numpy(array: Any) -> Any:
    return array.asnumpy() if isinstance(array, mx.nd.NDArray) else mx.nd.array(array).asnumpy()


class VGG16Atrous(Backbone):
    """VGG-16 (``vgg16`` of the model zoo) as the SSD paper used it (Liu et al., 2016).

    The model zoo's convolutions conv1_1 ... conv5_3, then, as in the paper:
    pool5 as a 3 x 3 max-pool with stride 1 (and padding 1), fc6 as a 3 x 3
    convolution with dilation 6 and 1024 filters, fc7 as a 1 x 1 convolution with
    1024 filters, each with a ReLU. The pools round up, as the paper's Caffe
    model (a 300 x 300 image gives maps of 38 and 19 pixels).

    Returns two maps: conv4_3 (after its ReLU), L2-normalised over the channels
    and multiplied by a learnable per-channel scale that starts at 20, at stride
    8 with 512 channels, and fc7 at stride 16 with 1024 channels: a
    ``(B, 3, 256, 256)`` batch gives ``(B, 512, 32, 32)`` and ``(B, 1024, 16, 16)``.
    The detector adds its own halving blocks and a global max-pool until it has
    one map per anchor scale: with the default 5 scales the smallest input is 64 x 64.

    The body starts with :class:`detkit.ImageNetInput`, which turns detkit's
    input (RGB minus :data:`detkit.data.RGB_MEAN`, 0-255) into the ImageNet
    normalisation the model zoo's weights were trained on (VGG has no
    BatchNorm to absorb another scale); always, so that the architecture does
    not depend on where the initial weights come from.

    Weights are random (the detector's Xavier initialisation) unless
    ``pretrained`` or ``weights`` is given. Then the convolutions take the
    model zoo's ImageNet weights of ``vgg16`` and fc6 and fc7 its dense fc6 and
    fc7 subsampled as the paper did (:func:`reduce_fc_layers`), read once when
    the parameters are first initialised — by the detector's constructor — not
    when the backbone is built (:func:`detkit.initialize_pretrained`).

    Parameters
    ----------
    pretrained : bool, default False
        Start from the ImageNet weights of MXNet's model store: the file
        ``vgg16-e660d456.params`` (528 MB) in ``root``, downloaded there if missing
        (which needs network access) when the parameters are initialised; see
        :func:`detkit.pretrained_parameters`.
    weights : str or os.PathLike, optional
        A ``.params`` file of the model zoo's ``vgg16`` (``net.save_parameters``),
        such as the model store's file copied from a machine with network access;
        implies ``pretrained``.
    root : str or os.PathLike, optional
        The model store directory; default ``$MXNET_HOME/models`` (``~/.mxnet/models``).
    caffe_input : bool, default False
        Feed the convolutions RGB on the 0-255 scale minus the ImageNet mean
        (``255 * MEAN``), the Caffe model's input, which GluonCV's SSD VGG-16
        (``vgg16_atrous``, its ``init_scale``) uses, instead of the ImageNet
        normalisation of the model zoo's ``vgg16``.
    l2_eps : float, default 1e-10
        The ``eps`` of conv4_3's L2 normalisation (MXNet's default; GluonCV's
        ``Normalize`` uses 1e-5).

    Raises
    ------
    InputError
        If ``weights`` does not exist; when the parameters are initialised, if it
        does not fit ``vgg16``.
    DownloadError
        When the parameters are initialised, if ``pretrained`` and the weights are
        neither in ``root`` nor downloadable; the message says which file to put where.

    Notes
    -----
    :meth:`get_config` records ``caffe_input`` and ``l2_eps`` when they are not
    the defaults, and not the initial weights: a saved detector carries its own
    trained weights, so rebuilding it must not need the ImageNet file.
    """

    def __init__(
        self,
        pretrained: bool = False,
        weights: Optional[str | os.PathLike[str]] = None,
        root: Optional[str | os.PathLike[str]] = None,
        caffe_input: bool = False,
        l2_eps: float = 1e-10,
    ) -> None:
        super().__init__()
        if not isinstance(caffe_input, bool):
            raise detkit.errors.InputError(
                f"The 'caffe_input' argument of VGG16Atrous must be True or False; got {caffe_input!r} instead.")
        if isinstance(l2_eps, bool) or not isinstance(l2_eps, (int, float)) or not 0 < l2_eps < 1:
            raise detkit.errors.InputError(
                f"The 'l2_eps' argument of VGG16Atrous must be a number in (0, 1); got {l2_eps!r} instead.")
        self.caffe_input = caffe_input
        self.l2_eps = float(l2_eps)
        self.pretrained = bool(pretrained or weights is not None)
        self.weights = weights
        self.root = root
        network = vision.get_vgg(16)
        features = network.features
        with network.name_scope():
            # fc6 and fc7 are named as the network's layers (vgg0_fc6_...), so that one block holds every
            # parameter that takes vgg16's weights under the network's prefix (see below).
            fc6 = nn.Conv2D(1024, 3, padding=6, dilation=6, in_channels=512, prefix="fc6_")
            fc7 = nn.Conv2D(1024, 1, in_channels=1024, prefix="fc7_")
        with self.name_scope():
            self.input = _CaffeInput() if caffe_input else detkit.ImageNetInput()
            self.conv4_3 = nn.HybridSequential()  # conv1_1 ... conv4_3 (ReLU): stride 8
            self.conv5_3 = nn.HybridSequential()  # pool4, conv5_1 ... conv5_3 (ReLU), pool5: stride 16
            for index in range(_CONV5_3_END):
                # The model zoo's pools round down; the paper's round up (38 x 38 at 300 x 300).
                layer = nn.MaxPool2D(2, 2, ceil_mode=True) if index in _POOLS else features[index]
                (self.conv4_3 if index < _CONV4_3_END else self.conv5_3).add(layer)
            self.conv5_3.add(nn.MaxPool2D(3, 1, 1))  # pool5: 3 x 3, stride 1
            self.fc6 = fc6
            self.fc7 = fc7
            self.conv4_3_scale = self.params.get(
                "conv4_3_scale", shape=(1, 512, 1, 1), init=mx.init.Constant(CONV4_3_SCALE)
            )
        if self.pretrained:
            # The convolutions and fc6 and fc7, under the network's prefix: one lazy read of vgg16's file.
            with network.name_scope():
                pretrained = nn.HybridSequential(prefix="")
            pretrained.add(*[features[index] for index in range(_CONV5_3_END) if index not in _POOLS], fc6, fc7)
            detkit.initialize_pretrained(pretrained, "vgg16", weights=weights, root=root, convert=_converted)

    @property
    def out_channels(self) -> tuple[int, int]:
        return (512, 1024)

    @property
    def out_strides(self) -> tuple[int, int]:
        return (8, 16)

    def get_config(self) -> dict[str, Any]:
        """``caffe_input`` and ``l2_eps`` where not the defaults; not the initial weights (see the class notes)."""
        config: dict[str, Any] = {}
        if self.caffe_input:
            config["caffe_input"] = True
        if self.l2_eps != 1e-10:
            config["l2_eps"] = self.l2_eps
        return config

    def hybrid_forward(self, F: Any, x: Any, conv4_3_scale: Any) -> list[Any]:
        conv4_3 = self.conv4_3(self.input(x))  # (B, 512, H/8, W/8)
        normalised = F.broadcast_mul(F.L2Normalization(conv4_3, mode="channel", eps=self.l2_eps), conv4_3_scale)
        y = self.conv5_3(conv4_3)  # (B, 512, H/16, W/16)
        y = F.relu(self.fc6(y))  # (B, 1024, H/16, W/16)
        y = F.relu(self.fc7(y))  # (B, 1024, H/16, W/16)
        return [normalised, y]


class _CaffeInput(mx.gluon.HybridBlock):
    """detkit's input (RGB minus ``RGB_MEAN``, 0-255) as RGB minus the ImageNet mean on the 0-255 scale."""

    def __init__(self) -> None:
        super().__init__()
        self._shift = tuple(m0 - 255.0 * m for m0, m in zip(detkit.data.RGB_MEAN, detkit.ImageNetInput.MEAN))

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        channels = F.split(x, num_outputs=3, axis=1)  # three (B, 1, H, W)
        return F.concat(*[c + shift for c, shift in zip(channels, self._shift)], dim=1)


def _converted(values: Mapping[str, Any]) -> dict[str, Any]:
    """vgg16's values with the SSD paper's fc6 and fc7 (:func:`reduce_fc_layers`) added."""
    reduced = reduce_fc_layers(
        values["dense0_weight"], values["dense0_bias"], values["dense1_weight"], values["dense1_bias"]
    )
    return {**values, **reduced}
