"""The five interfaces a detector is composed of, and their contracts.

Conventions shared by every interface:

* boxes are corner format ``(xmin, ymin, xmax, ymax)``, normalised to ``[0, 1]``
  of the network's input image;
* ``B`` is the batch size, ``N`` the number of anchors over all scales, ``C`` the
  number of object classes; inside the network class 0 is the background, so
  class predictions have ``C + 1`` entries per anchor;
* labels are ``(B, M, 5)`` rows ``[class_id, xmin, ymin, xmax, ymax]`` with
  0-based object class ids and ``class_id = -1`` for padding rows;
* detections are ``(B, K, 6)`` rows ``[class_id, score, xmin, ymin, xmax, ymax]``
  with ``class_id = -1`` for rows that hold no detection.

Every interface is a Gluon :class:`~mxnet.gluon.HybridBlock` so that a detector
hybridizes into one static graph; implementations write ``hybrid_forward(F, ...)``
with ``F`` either ``mxnet.ndarray`` or ``mxnet.symbol``.

A component is rebuilt from its registered name and the keyword arguments of its
constructor, which :meth:`Component.get_config` returns. The default
implementation reads each constructor argument back from the attribute of the
same name (the scikit-learn convention); a component that stores its arguments
differently overrides :meth:`Component.get_config`.

Export (to ONNX, for runtimes other than MXNet) is part of each contract:

* a :class:`Backbone` is exported with the scale blocks and heads by MXNet's own
  ONNX exporter (``mxnet.onnx.export_model``); one built of operators that
  exporter lacks says so with :attr:`Backbone.exports_onnx` ``False``;
* an :class:`AnchorGenerator`'s anchors depend on shapes only, so they are
  exported as a constant: :meth:`AnchorGenerator.anchors_for` gives them for
  the feature-map shapes of the exported input size;
* a :class:`PostProcessor` gives an ONNX sub-graph (:meth:`PostProcessor.export_onnx`)
  or, by not overriding it, declares that it cannot (:attr:`PostProcessor.exports_onnx`);
* a :class:`TargetAssigner` and a :class:`Loss` serve training only and are not
  part of an exported detector.

A detector whose component cannot export fails with one
:class:`~detkit.errors.ExportError` that names the component and its distribution.
"""

from __future__ import annotations

import abc
import inspect
from typing import Any, NamedTuple, Sequence

import numpy as np
from mxnet import nd
from mxnet.gluon import HybridBlock

__all__ = [
    "AnchorGenerator",
    "Backbone",
    "Component",
    "Loss",
    "OnnxSubgraph",
    "PostProcessor",
    "TargetAssigner",
]

# Arguments of HybridBlock.__init__ that are Gluon plumbing, not configuration.
_GLUON_ARGUMENTS = frozenset({"self", "prefix", "params"})


def _plain(value: Any) -> Any:
    """Convert tuples to lists, recursively, so that a config survives YAML and JSON."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


class OnnxSubgraph(NamedTuple):
    """ONNX nodes that a component adds to an exported detector's graph.

    Attributes
    ----------
    nodes : list of onnx.NodeProto
        The nodes, in an order that computes each input before it is read.
    initializers : list of onnx.TensorProto
        The constants the nodes read.
    """

    nodes: list[Any]
    initializers: list[Any]


class Component(HybridBlock, metaclass=abc.ABCMeta):
    """Base of the five interfaces: a hybridizable block that can describe how to rebuild itself."""

    #: The registry kind of the interface (``"backbone"``, ...); set by each interface.
    kind: str = ""

    def get_config(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this component, as plain YAML-able values.

        Raises
        ------
        NotImplementedError
            If a constructor argument is not stored as an attribute of the same name;
            override this method in that case.
        """
        signature = inspect.signature(type(self).__init__)
        config: dict[str, Any] = {}
        for parameter in signature.parameters.values():
            if parameter.name in _GLUON_ARGUMENTS or parameter.kind in (
                parameter.VAR_POSITIONAL,
                parameter.VAR_KEYWORD,
            ):
                continue
            if not hasattr(self, parameter.name):
                raise NotImplementedError(
                    f"{type(self).__name__} does not store its constructor argument "
                    f"{parameter.name!r} as an attribute of the same name; store it, "
                    "or override get_config() to return the constructor's keyword arguments"
                )
            config[parameter.name] = _plain(getattr(self, parameter.name))
        return config


class Backbone(Component):
    """Extracts feature maps from images.

    ``hybrid_forward(F, x)`` takes images ``(B, 3, H, W)`` and returns a list of
    feature maps ``(B, out_channels[i], H_i, W_i)``, highest resolution first.
    The detector adds its own scale blocks after the last map until there is one
    map per anchor scale.
    """

    kind = "backbone"

    @property
    @abc.abstractmethod
    def out_channels(self) -> Sequence[int]:
        """Channels of each returned feature map, in the order returned."""

    @property
    @abc.abstractmethod
    def out_strides(self) -> Sequence[int]:
        """How many input pixels one position of each returned feature map spans (8 for ``H/8``)."""

    @property
    def min_input_size(self) -> int:
        """The smallest image height and width the backbone accepts; default: its last stride.

        A backbone whose last maps shrink by more than their strides say
        (unpadded convolutions, as SSD300's last layers) returns more.
        """
        return int(self.out_strides[-1])

    @property
    def exports_onnx(self) -> bool:
        """Whether MXNet's ONNX exporter can export this backbone (default ``True``).

        The backbone is exported with the detector's scale blocks and heads by
        ``mxnet.onnx.export_model``; a backbone built of operators that exporter
        does not support returns ``False``, and exporting its detector then fails
        with an :class:`~detkit.errors.ExportError` that names it.
        """
        return True

    @abc.abstractmethod
    def hybrid_forward(self, F: Any, x: Any) -> list[Any]:
        """Map images ``(B, 3, H, W)`` to a list of feature maps, highest resolution first."""


class AnchorGenerator(Component):
    """Places anchor boxes on the feature map of every scale.

    ``hybrid_forward(F, *feature_maps)`` takes one feature map ``(B, c_i, H_i, W_i)``
    per scale and returns anchors ``(1, N, 4)`` in corner format, normalised to
    ``[0, 1]``, ordered scale by scale, then row-major over positions, then anchor
    by anchor within a position (the order in which the heads' predictions are
    flattened). Anchors depend on the feature maps' shapes only.
    """

    kind = "anchor_generator"

    @property
    @abc.abstractmethod
    def num_anchors(self) -> Sequence[int]:
        """How many anchors sit on each position, one entry per scale; its length is the number of scales."""

    @property
    def num_scales(self) -> int:
        """The number of feature-map scales the generator expects."""
        return len(self.num_anchors)

    def anchors_for(self, feature_shapes: Sequence[Sequence[int]]) -> np.ndarray:
        """The anchors ``(1, N, 4)`` (float32) for feature maps of these shapes, one ``(B, c, H, W)`` per scale.

        An exported detector holds them as a constant, computed for its input size.
        The default runs the generator on zero-valued maps of these shapes on the
        CPU, which is exact for any generator whose anchors depend on shapes only
        (as the contract requires).
        """
        maps = [nd.zeros(tuple(int(v) for v in shape)) for shape in feature_shapes]
        return np.asarray(self(*maps).asnumpy(), dtype=np.float32)

    @abc.abstractmethod
    def hybrid_forward(self, F: Any, *feature_maps: Any) -> Any:
        """Return anchors ``(1, N, 4)`` for the given feature maps, one per scale."""


class TargetAssigner(Component):
    """Matches anchors to ground-truth boxes and encodes the training targets.

    ``hybrid_forward(F, anchors, labels, class_preds)`` takes anchors ``(1, N, 4)``,
    labels ``(B, M, 5)`` and class predictions ``(B, N, C + 1)`` (which may be
    used for hard-negative mining; no gradient flows through the targets) and
    returns ``(box_targets, box_mask, class_targets)``:

    * ``box_targets`` ``(B, N * 4)``: encoded offsets from each anchor to its box
      (the encoding below), 4 consecutive values per anchor;
    * ``box_mask`` ``(B, N * 4)``: 1 where an anchor's offsets count in the loss, else 0;
    * ``class_targets`` ``(B, N)``: 0 for background, ``class_id + 1`` for an object,
      and ``-1`` for anchors that the loss must ignore.

    Boxes and anchors are corners ``(xmin, ymin, xmax, ymax)`` relative to the
    image (0 to 1). The encoding of a box ``g`` against an anchor ``a``, with
    centres ``(gx, gy)``, ``(ax, ay)``, sizes ``(gw, gh)``, ``(aw, ah)`` and the
    variances ``(v0, v1, v2, v3)`` (default ``(0.1, 0.1, 0.2, 0.2)``), is that of
    SSD and of MXNet's ``MultiBoxTarget``::

        tx = (gx - ax) / aw / v0        ty = (gy - ay) / ah / v1
        tw = log(gw / aw) / v2          th = log(gh / ah) / v3

    A :class:`PostProcessor` decodes it; the two must agree on the variances.
    The conformance kit checks the encoding of known boxes
    (:mod:`detkit.testing`, ``check_target_assigner_encoding``).
    """

    kind = "target_assigner"

    @abc.abstractmethod
    def hybrid_forward(self, F: Any, anchors: Any, labels: Any, class_preds: Any) -> tuple[Any, Any, Any]:
        """Return ``(box_targets (B, N*4), box_mask (B, N*4), class_targets (B, N))``."""


class Loss(Component):
    """Scores predictions against the targets of a :class:`TargetAssigner`.

    ``hybrid_forward(F, class_preds, box_preds, class_targets, box_targets, box_mask)``
    takes class predictions ``(B, N, C + 1)`` (raw scores), box predictions
    ``(B, N * 4)`` and the three targets, and returns a tuple
    ``(loss, term_1, ..., term_k)`` of arrays ``(B,)``: the loss per sample to
    minimise, then its named parts (``term_names``) for logging.
    Anchors whose class target is ``-1`` must not contribute. A loss serves
    training only and is not part of an exported detector.
    """

    kind = "loss"

    @property
    @abc.abstractmethod
    def term_names(self) -> Sequence[str]:
        """Names of the loss terms returned after the total, in order."""

    @abc.abstractmethod
    def hybrid_forward(
        self, F: Any, class_preds: Any, box_preds: Any, class_targets: Any, box_targets: Any, box_mask: Any
    ) -> tuple[Any, ...]:
        """Return ``(loss, *terms)``, each ``(B,)``."""


class PostProcessor(Component):
    """Turns raw predictions into detections.

    ``hybrid_forward(F, class_preds, box_preds, anchors)`` takes class predictions
    ``(B, N, C + 1)`` (raw scores), box predictions ``(B, N * 4)`` and anchors
    ``(1, N, 4)`` and returns detections ``(B, K, 6)`` rows
    ``[class_id, score, xmin, ymin, xmax, ymax]``, 0-based object class ids (the
    background is never reported), ``class_id = -1`` for empty rows. The corners are
    fractions of the image, clipped to it (``0 <= xmin <= xmax <= 1``, the same for
    y): :meth:`~detkit.SSDDetector.detect`, ``predict``, :func:`~detkit.evaluate`,
    drawing and export report them as they come. A box clipping leaves without
    area is no detection (``class_id = -1``).

    ``box_preds`` hold offsets encoded as :class:`TargetAssigner` describes; the
    post-processor inverts that encoding, with the same variances
    ``(v0, v1, v2, v3)`` (default ``(0.1, 0.1, 0.2, 0.2)``)::

        gx = ax + tx * v0 * aw          gy = ay + ty * v1 * ah
        gw = aw * exp(tw * v2)          gh = ah * exp(th * v3)

    and returns the corners ``(gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2)``
    relative to the image, as MXNet's ``MultiBoxDetection`` does. The conformance
    kit checks that it decodes what the default target assigner encodes
    (``check_post_processor_decodes_the_encoding``). A component with a
    ``variances`` argument is checked with its own variances.

    To be exported, a post-processor overrides :meth:`export_onnx` with the
    same computation as ONNX nodes; the conformance kit then checks that
    ONNX Runtime's detections equal the block's.
    """

    kind = "post_processor"

    @property
    def exports_onnx(self) -> bool:
        """Whether :meth:`export_onnx` is implemented (it is overridden by the component's class)."""
        return type(self).export_onnx is not PostProcessor.export_onnx

    def export_onnx(self, class_preds: str, box_preds: str, anchors: str, detections: str, *,
                    opset: int) -> OnnxSubgraph:
        """The same computation as ONNX nodes, for an exported detector.

        Parameters
        ----------
        class_preds, box_preds : str
            Names of the graph's tensors ``(B, N, C + 1)`` (raw scores) and ``(B, N * 4)``;
            ``B`` is dynamic.
        anchors : str
            Name of the constant ``(1, N, 4)``.
        detections : str
            The name the nodes must give their output ``(B, K, 6)``, in the layout of
            ``hybrid_forward``: rows with ``class_id >= 0`` must equal the block's, in
            the same order; other rows have ``class_id = -1``.
        opset : int
            The ONNX opset of the graph (13 or newer).

        Returns
        -------
        OnnxSubgraph
            The nodes and their constants; every other name they create must start
            with this block's ``prefix``, so that it is unique in the graph.

        Raises
        ------
        NotImplementedError
            By default: this post-processor cannot be exported.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement export_onnx()")

    @abc.abstractmethod
    def hybrid_forward(self, F: Any, class_preds: Any, box_preds: Any, anchors: Any) -> Any:
        """Return detections ``(B, K, 6)``."""
