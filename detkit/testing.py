"""The conformance kit: checks that a component honours its interface's contract.

Plugin authors run it in their own test suites, the way scikit-learn's
``parametrize_with_checks`` checks estimators; detkit runs it on its built-in
components. With pytest::

    from detkit.testing import parametrize_with_checks
    from my_plugin import MyBackbone, MyLoss

    @parametrize_with_checks([MyBackbone(), MyLoss(alpha=0.5)])
    def test_detkit_conformance(component, check):
        check(component)

or, in one call that reports every failing check at once::

    from detkit.testing import check_component

    check_component(MyBackbone())

What is checked, for every component:

* ``get_config()`` returns plain YAML-able keyword arguments that rebuild an
  equal component (``check_config_round_trip``);
* a :class:`~detkit.SSDDetector` built with it in place of the default trains
  one step on a ``64 x 64`` batch, every trainable parameter receiving a
  gradient (``check_trains_in_detector``), and saves and loads with identical
  outputs (``check_detector_round_trip``);
* for a backbone, anchor generator or post-processor that can export (see
  :attr:`~detkit.interfaces.PostProcessor.exports_onnx`), and when the ``onnx``
  extra is installed, the detector exports to ONNX, ONNX Runtime's network
  predictions equal MXNet's, and its detections equal the post-processor's on
  the same predictions: the same count and classes, scores within 1e-5, boxes
  within 1e-4 (``check_export_parity``);

and, per kind, that the declared properties are well formed, the outputs have
the documented shapes and dtype ``float32`` for a few input sizes, the block
hybridizes into a static graph with the same results, and gradients flow where
they must (to a backbone's parameters and input, to a loss's predictions) and
nowhere else (not through a target assigner's targets). The box encoding of
:class:`~detkit.interfaces.TargetAssigner` is checked on known boxes: a target
assigner encodes them by its formula (``check_target_assigner_encoding``), and a
post-processor decodes what the default target assigner (``multibox_target``)
encodes back into those boxes (``check_post_processor_decodes_the_encoding``).
Each check builds fresh
copies of the component from its ``get_config()``, so the component given is
not changed.

Every failure is a :class:`ConformanceError`, an :class:`AssertionError`, whose
message names the check, the component and what was expected. Checks run on
``ctx`` (default: the CPU) with tiny inputs, seeding MXNet's and numpy's random
generators for repeatable results; a check of a component takes well under a
second for small networks.

A component whose class no installed plugin registers is registered for the
duration of the detector checks by a temporary in-process plugin, so the kit also
works before a plugin is installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import inspect
import io
import json
import math
import os
import tempfile
import threading
import types
import warnings
import zipfile
from typing import Any, Callable, Iterator, Mapping, Sequence

import mxnet as mx
import numpy as np
import yaml
from mxnet import autograd, gluon
from mxnet.gluon.model_zoo import model_store

from ._base import DEFAULT_VARIANCES as _DEFAULT_VARIANCES
from ._base import PathLike
from ._base import file_digest as _file_digest
from ._model import SSDDetector
from ._model import as_numpy as _as_numpy
from ._pretrained import GLUONCV_SSD_SHA1
from ._plugins import ACTIVE, KINDS, register_plugin, unregister_plugin
from ._plugins import get_registry as _get_registry
from .errors import InputError, PluginWarning
from .hookspecs import hookimpl
from .interfaces import (
    AnchorGenerator,
    Backbone,
    Component,
    Loss,
    PostProcessor,
    TargetAssigner,
)

__all__ = [
    "ConformanceError",
    "ModelStoreServer",
    "check_anchor_generator",
    "check_backbone",
    "check_component",
    "check_loss",
    "check_post_processor",
    "check_target_assigner",
    "compare_detections",
    "parametrize_with_checks",
    "serve_model_store",
    "yield_checks",
]

#: Images per batch in the checks (2: BatchNorm needs more than one sample to train).
_BATCH = 2
#: Object classes of the detector in the detector checks.
_CLASSES = ("cat", "dog")
_RTOL, _ATOL = 1e-4, 1e-5


class ConformanceError(AssertionError):
    """A component does not honour its interface's contract; the message says which check and how."""


# -- public entry points -------------------------------------------------------------------


def yield_checks(component: Component, kind: str | None = None, *,
                 ctx: mx.Context | None = None) -> Iterator[Callable[[Component], None]]:
    """Yield the checks that apply to ``component``, each a callable ``check(component)``.

    Parameters
    ----------
    component : Component
        An instance of one of the five interfaces.
    kind : str, optional
        ``"backbone"``, ``"anchor_generator"``, ``"target_assigner"``, ``"loss"`` or
        ``"post_processor"``; default: the component's own ``kind``.
    ctx : mxnet.Context, optional
        Where the checks run; default: ``mx.cpu()``.

    Yields
    ------
    callable
        ``check(component)``, raising :class:`ConformanceError` on failure; its
        ``__name__`` is the check's name (``"check_backbone_outputs"``).
    """
    kind = _resolve_kind(component, kind)
    for function in _CHECKS[kind]:
        yield _Check(function, ctx)


def check_component(component: Component, kind: str | None = None, *, ctx: mx.Context | None = None) -> None:
    """Run every check that applies to ``component``; raise one error listing every failure.

    Parameters
    ----------
    component : Component
        An instance of one of the five interfaces.
    kind : str, optional
        The interface to check against; default: the component's own ``kind``.
    ctx : mxnet.Context, optional
        Where the checks run; default: ``mx.cpu()``.

    Raises
    ------
    ConformanceError
        If any check fails; the message lists each failing check and why.
    """
    failures = []
    checks = list(yield_checks(component, kind, ctx=ctx))
    for check in checks:
        try:
            check(component)
        except ConformanceError as error:
            failures.append(str(error))
    if failures:
        raise ConformanceError(
            f"{_describe(component)} fails {len(failures)} of {len(checks)} conformance checks:\n"
            + "\n".join(f"- {failure}" for failure in failures)
        )


def check_backbone(backbone: Backbone, *, ctx: mx.Context | None = None) -> None:
    """Run every :class:`~detkit.interfaces.Backbone` check on ``backbone`` (see :func:`check_component`)."""
    check_component(backbone, "backbone", ctx=ctx)


def check_anchor_generator(anchor_generator: AnchorGenerator, *, ctx: mx.Context | None = None) -> None:
    """Run every :class:`~detkit.interfaces.AnchorGenerator` check (see :func:`check_component`)."""
    check_component(anchor_generator, "anchor_generator", ctx=ctx)


def check_target_assigner(target_assigner: TargetAssigner, *, ctx: mx.Context | None = None) -> None:
    """Run every :class:`~detkit.interfaces.TargetAssigner` check (see :func:`check_component`)."""
    check_component(target_assigner, "target_assigner", ctx=ctx)


def check_loss(loss: Loss, *, ctx: mx.Context | None = None) -> None:
    """Run every :class:`~detkit.interfaces.Loss` check on ``loss`` (see :func:`check_component`)."""
    check_component(loss, "loss", ctx=ctx)


def check_post_processor(post_processor: PostProcessor, *, ctx: mx.Context | None = None) -> None:
    """Run every :class:`~detkit.interfaces.PostProcessor` check (see :func:`check_component`)."""
    check_component(post_processor, "post_processor", ctx=ctx)


def parametrize_with_checks(components: Sequence[Component], *, ctx: mx.Context | None = None) -> Any:
    """A pytest decorator that parametrizes a test with ``(component, check)`` pairs.

    Each pair becomes its own test, named after the component and the check, so
    a failure points at one contract.

    Parameters
    ----------
    components : sequence of Component
        The components to check, each an instance of one of the five interfaces.
    ctx : mxnet.Context, optional
        Where the checks run; default: ``mx.cpu()``.

    Returns
    -------
    decorator
        ``pytest.mark.parametrize("component, check", ...)``.

    Examples
    --------
    ::

        @parametrize_with_checks([MyBackbone()])
        def test_detkit_conformance(component, check):
            check(component)
    """
    import pytest  # a test utility: pytest is only needed by those who call this

    if isinstance(components, Component) or not isinstance(components, Sequence):
        raise TypeError(
            "The 'components' argument of parametrize_with_checks must be a list of component "
            f"instances; got {components!r} instead."
        )
    parameters = []
    for component in components:
        for check in yield_checks(component, ctx=ctx):
            parameters.append(pytest.param(component, check, id=f"{_describe(component)}-{check.__name__}"))
    return pytest.mark.parametrize("component, check", parameters)


# -- pretrained weights -----------------------------------------------------------------------


@dataclasses.dataclass
class ModelStoreServer:
    """A model store served on 127.0.0.1 by :func:`serve_model_store`."""

    #: The repository's URL, ``http://127.0.0.1:PORT/`` (what ``MXNET_GLUON_REPO`` is set to).
    url: str
    #: Model store name -> the file name the model store gives it, ``NAME-HASH.params``.
    file_names: dict[str, str]
    #: The paths requested so far, in order (``/gluon/models/NAME-HASH.zip``).
    requests: list[str]


@contextlib.contextmanager
def serve_model_store(weights: Mapping[str, PathLike], *, accept: bool = True) -> Iterator[ModelStoreServer]:
    """Serve ``.params`` files as MXNet's model store on 127.0.0.1, to test ``pretrained=True`` offline.

    Inside the ``with`` block, ``MXNET_GLUON_REPO`` points at a web server on
    127.0.0.1 (a free port) that answers ``gluon/models/NAME-HASH.zip`` with a
    zip holding ``NAME-HASH.params``, your file, for each ``NAME`` in ``weights``;
    other paths get HTTP 404. :func:`detkit.pretrained_parameters` (and so any
    backbone's ``pretrained=True``, when its parameters are initialised) then
    downloads your files as it would MXNet's; ``requests`` shows whether it did. Both the variable and the model store's table are restored afterwards.

    Parameters
    ----------
    weights : mapping of str to str or os.PathLike
        Model store name (``"mobilenet0.25"``, or a GluonCV detector such as
        ``"ssd_512_mobilenet1.0_voc"`` for :func:`detkit.import_gluoncv`) -> a
        ``.params`` file of that network, e.g. a randomly initialised one saved
        with ``save_parameters``.
    accept : bool, default True
        Make the model store expect each file's own SHA-1 sum (its table,
        ``mxnet.gluon.model_zoo.model_store._model_sha1``, or detkit's table of
        GluonCV's detectors, holds the sums of
        the real ImageNet files, which a test file cannot match; its file names
        ``NAME-HASH`` follow, with the first 8 digits of the sum as ``HASH``).
        ``False`` keeps the real sums: a download then fails verification.

    Yields
    ------
    ModelStoreServer
        The repository's ``url``, the ``file_names`` served and the ``requests`` received.

    Examples
    --------
    ::

        with serve_model_store({"mobilenet0.25": "random.params"}) as store:
            backbone = MyMobileNet(pretrained=True, root=tmp_path)   # reads nothing yet
            backbone.initialize()                                     # downloads (as a detector would)
        assert (tmp_path / store.file_names["mobilenet0.25"]).is_file()
        assert len(store.requests) == 1
    """
    tables = (model_store._model_sha1, GLUONCV_SSD_SHA1)  # MXNet's backbones, GluonCV's detectors
    files: dict[str, bytes] = {}
    file_names: dict[str, str] = {}
    sums: dict[str, str] = {}
    for name, path in weights.items():  # every file read before anything global changes
        if not os.path.isfile(path):
            raise InputError(f"The weights file {path} of {name!r} does not exist; give serve_model_store "
                             "a .params file for each name.")
        sums[name] = _file_digest(path, "sha1")
    for name, path in weights.items():
        table = tables[1] if name in tables[1] else tables[0]
        if not accept and name not in table:
            raise InputError(f"{name!r} is not a network of MXNet's model store; with accept=False, serve "
                             "only model store names.")
        file_name = f"{name}-{(sums[name] if accept else table[name])[:8]}.params"  # model_store.short_hash's
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.write(path, file_name)
        files[f"/gluon/models/{file_name[:-len('.params')]}.zip"] = archive.getvalue()
        file_names[name] = file_name
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            requests.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass  # quiet

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    previous_tables = [dict(table) for table in tables]
    previous_repository = os.environ.get("MXNET_GLUON_REPO")
    try:
        # MXNet's global table and the environment change only here, inside the try that restores them.
        if accept:
            for name, digest in sums.items():
                (tables[1] if name in tables[1] else tables[0])[name] = digest
        os.environ["MXNET_GLUON_REPO"] = url
        yield ModelStoreServer(url=url, file_names=file_names, requests=requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for table, previous in zip(tables, previous_tables):
            table.clear()
            table.update(previous)
        if previous_repository is None:
            os.environ.pop("MXNET_GLUON_REPO", None)
        else:
            os.environ["MXNET_GLUON_REPO"] = previous_repository


# -- machinery ------------------------------------------------------------------------------


class _Check:
    """One check bound to a context; called with the component; named after the check."""

    def __init__(self, function: Callable[..., None], ctx: mx.Context | None) -> None:
        self.function = function
        self.ctx = ctx if ctx is not None else mx.cpu()
        self.__name__ = function.__name__.lstrip("_")

    def __call__(self, component: Component) -> None:
        _seed()
        try:
            self.function(component, self.ctx)
        except ConformanceError as error:
            raise ConformanceError(f"{self.__name__}: {_describe(component)}: {error}") from None
        except Exception as error:  # a crash inside the component is a failure of this check
            raise ConformanceError(
                f"{self.__name__}: {_describe(component)}: raised {type(error).__name__}: {error}"
            ) from error

    def __repr__(self) -> str:
        return self.__name__


def _seed() -> None:
    mx.random.seed(0)
    np.random.seed(0)


def _resolve_kind(component: Any, kind: str | None) -> str:
    if not isinstance(component, Component):
        raise ConformanceError(
            f"{component!r} is not a detkit component: it must be an instance of one of "
            "detkit.interfaces.Backbone, AnchorGenerator, TargetAssigner, Loss, PostProcessor"
        )
    kind = component.kind if kind is None else kind
    if kind not in KINDS:
        raise ConformanceError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    interface = KINDS[kind][0]
    if not isinstance(component, interface):
        raise ConformanceError(
            f"{_describe(component)} is checked as a {kind} but does not implement "
            f"{interface.__module__}.{interface.__qualname__}"
        )
    return kind


def _describe(component: Any) -> str:
    """``ClassName(arg=value, ...)``, short; Gluon's own repr prints the whole network."""
    try:
        config = component.get_config()
        arguments = ", ".join(f"{key}={value!r}" for key, value in config.items())
    except Exception:
        arguments = "..."
    text = f"{type(component).__name__}({arguments})"
    return text if len(text) <= 80 else text[:77] + "..."


def _clone(component: Component, ctx: mx.Context, *, initialize: bool = True) -> Component:
    """A fresh copy built from ``get_config()`` (see ``check_config_round_trip``), initialised on ``ctx``."""
    try:
        config = component.get_config()
        copy = type(component)(**config)
    except Exception as error:
        raise ConformanceError(
            f"cannot rebuild it as type(component)(**component.get_config()): {type(error).__name__}: {error}"
        ) from error
    if initialize:
        copy.initialize(mx.init.Xavier(magnitude=2), ctx=ctx)
    return copy


def _close(actual: np.ndarray, expected: np.ndarray) -> bool:
    return actual.shape == expected.shape and bool(np.allclose(actual, expected, rtol=_RTOL, atol=_ATOL))


def _as_list(outputs: Any, what: str) -> list[Any]:
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    raise ConformanceError(f"{what} must return a list or tuple; got {type(outputs).__name__}")


def _check_array(array: Any, shape: tuple[int, ...], what: str, *, finite: bool = True) -> np.ndarray:
    if not isinstance(array, mx.nd.NDArray):
        raise ConformanceError(f"{what} must be an mxnet NDArray; got {type(array).__name__}")
    if tuple(array.shape) != tuple(shape):
        raise ConformanceError(f"{what} has shape {tuple(array.shape)}; expected {tuple(shape)}")
    if array.dtype != np.float32:
        raise ConformanceError(f"{what} has dtype {np.dtype(array.dtype).name}; expected float32")
    values = array.asnumpy()
    if finite and not np.isfinite(values).all():
        raise ConformanceError(f"{what} holds NaN or infinite values")
    return values


def _check_hybrid(component: Component, ctx: mx.Context, inputs: Sequence[mx.nd.NDArray], what: str) -> None:
    """Same outputs imperatively, hybridized, and a symbolic graph that builds."""
    imperative = [o.asnumpy() for o in _flat(component(*inputs))]
    component.hybridize(static_alloc=True)
    hybrid = [o.asnumpy() for o in _flat(component(*inputs))]
    if len(hybrid) != len(imperative):
        raise ConformanceError(f"hybridized, {what} returns {len(hybrid)} outputs instead of {len(imperative)}")
    for index, (a, b) in enumerate(zip(hybrid, imperative)):
        if not _close(a, b):
            raise ConformanceError(
                f"hybridized, output {index} of {what} differs from the imperative one (max abs difference "
                f"{np.abs(a - b).max() if a.shape == b.shape else 'shape ' + str(a.shape)}); hybrid_forward must "
                "compute with F only, without NDArray-only methods or Python control flow on values"
            )
    symbols = component(*[mx.sym.var(f"input{i}") for i in range(len(inputs))])
    if len(_flat(symbols)) != len(imperative):
        raise ConformanceError(f"called with symbols, {what} returns a different number of outputs")


def _flat(outputs: Any) -> list[Any]:
    if isinstance(outputs, (list, tuple)):
        return [item for output in outputs for item in _flat(output)]
    return [outputs]


def _check_parameter_gradients(block: gluon.Block, what: str) -> None:
    """Every trainable parameter got a finite gradient that is not all zero."""
    dead, broken = [], []
    for name, parameter in block.collect_params().items():
        if parameter.grad_req == "null":
            continue
        for gradient in parameter.list_grad():
            values = gradient.asnumpy()
            if not np.isfinite(values).all():
                broken.append(name)
            elif not values.any():
                dead.append(name)
    if broken:
        raise ConformanceError(f"{what}: parameters got NaN or infinite gradients: {', '.join(broken[:5])}")
    if dead:
        raise ConformanceError(
            f"{what}: parameters got no gradient (unused, or cut off from the output): {', '.join(dead[:5])}"
            f"{' ...' if len(dead) > 5 else ''}; a component must only hold parameters that it uses"
        )


# -- common checks --------------------------------------------------------------------------


def _check_config_round_trip(component: Component, ctx: mx.Context) -> None:
    config = component.get_config()
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise ConformanceError(f"get_config() must return a dict with str keys; got {config!r}")
    try:
        text = yaml.safe_dump(config)
        json.dumps(config)
    except Exception as error:
        raise ConformanceError(
            f"get_config() must return plain values (numbers, strings, lists, dicts) that YAML and JSON "
            f"can write; got {config!r} ({type(error).__name__}: {error})"
        ) from None
    if yaml.safe_load(text) != config:
        raise ConformanceError(f"get_config() does not survive YAML: {config!r} reads back as {yaml.safe_load(text)!r}")
    signature = inspect.signature(type(component))
    if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        unknown = sorted(set(config) - set(signature.parameters))
        if unknown:
            raise ConformanceError(f"get_config() returns {unknown}, which the constructor does not take")
    copy = type(component)(**config)
    if copy.get_config() != config:
        raise ConformanceError(
            f"type(component)(**get_config()) has a different config: {copy.get_config()!r} instead of {config!r}"
        )


def _detector_kwargs(component: Component, kind: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {kind: component}
    if kind == "backbone" and len(component.out_channels) > 5:  # more maps than the default 5 anchor scales
        scales = len(component.out_channels)
        sizes = [[round(0.1 + 0.85 * i / (scales - 1), 3)] for i in range(scales)]
        kwargs["anchor_generator"] = ("multibox_prior", {"sizes": sizes})
    return kwargs


def _input_size(component: Component, kind: str) -> int:
    """The image side the detector checks use: 64, or the detector's smallest input if larger."""
    scales = 5
    strides = [8]  # the toy backbone's
    backbone_maps = 1
    if kind == "backbone":
        strides = list(component.out_strides)
        backbone_maps = len(strides)
        scales = max(scales, backbone_maps)
    elif kind == "anchor_generator":
        scales = component.num_scales
    return max(64, int(strides[-1]) * 2 ** max(scales - backbone_maps - 1, 0))


def _build_detector(component: Component, kind: str, ctx: mx.Context, size: int) -> Any:

    kwargs = _detector_kwargs(component, kind)
    if "data_shape" in inspect.signature(SSDDetector).parameters:
        kwargs["data_shape"] = size
    return SSDDetector(list(_CLASSES), ctx=ctx, hybridize=True, scale_filters=16, **kwargs)


def _training_batch(size: int, ctx: mx.Context) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
    rng = np.random.RandomState(0)
    images = mx.nd.array(rng.uniform(-1, 1, (_BATCH, 3, size, size)), ctx=ctx, dtype="float32")
    labels = mx.nd.array([[[0, 0.1, 0.15, 0.6, 0.7], [-1, -1, -1, -1, -1]],
                          [[1, 0.3, 0.2, 0.9, 0.8], [0, 0.05, 0.5, 0.35, 0.95]]], ctx=ctx, dtype="float32")
    return images, labels


def _check_trains_in_detector(component: Component, ctx: mx.Context) -> None:
    kind = component.kind
    copy = _clone(component, ctx, initialize=False)
    size = _input_size(copy, kind)
    with _registered(copy, kind):
        detector = _build_detector(copy, kind, ctx, size)
        images, labels = _training_batch(max(size, detector.min_input_size), ctx)
        _train_step(detector, images, labels, copy)
        detections = detector.detect(images)
        _check_array(detections, (_BATCH, detections.shape[1], 6), "detector.detect() after a training step")


def _train_step(detector: Any, images: mx.nd.NDArray, labels: mx.nd.NDArray, component: Component) -> None:
    parameters = detector.network.collect_params()
    for kind in ("target_assigner", "loss"):
        parameters.update(getattr(detector, kind).collect_params())
    trainer = gluon.Trainer(parameters, "sgd", {"learning_rate": 0.01})
    with autograd.record():
        anchors, class_preds, box_preds = detector.network(images)
        box_targets, box_mask, class_targets = detector.target_assigner(anchors, labels, class_preds)
        outputs = _as_list(detector.loss(class_preds, box_preds, class_targets, box_targets, box_mask),
                           "the loss")
        total = outputs[0]
    total.backward()
    value = total.asnumpy()
    if value.shape != (_BATCH,) or not np.isfinite(value).all():
        raise ConformanceError(f"the detector's loss in a training step is {value}; expected {_BATCH} finite values")
    if component.collect_params():
        _check_parameter_gradients(component, "in a detector's training step")
    try:
        trainer.step(_BATCH)
    except UserWarning as error:  # Gluon raises it for parameters that backward did not reach
        raise ConformanceError(f"a detector training step left a parameter without gradient: {error}") from None


def _check_detector_round_trip(component: Component, ctx: mx.Context) -> None:

    kind = component.kind
    copy = _clone(component, ctx, initialize=False)
    size = _input_size(copy, kind)
    with _registered(copy, kind):
        detector = _build_detector(copy, kind, ctx, size)
        images, _ = _training_batch(max(size, detector.min_input_size), ctx)
        expected = [o.asnumpy() for o in detector(images)]
        with tempfile.TemporaryDirectory(prefix="detkit-conformance-") as directory:
            detector.save(directory)
            loaded = SSDDetector.load(directory, ctx=ctx)
        if type(getattr(loaded, kind)) is not type(copy) or getattr(loaded, kind).get_config() != copy.get_config():
            raise ConformanceError(
                f"SSDDetector.load() rebuilt the {kind} as {_describe(getattr(loaded, kind))} "
                f"instead of {_describe(copy)}"
            )
        actual = [o.asnumpy() for o in loaded(images)]
        for name, a, b in zip(("anchors", "class predictions", "box predictions"), actual, expected):
            if not _close(a, b):
                raise ConformanceError(f"after SSDDetector.save() and load(), the {name} differ")


def compare_detections(ours: Any, theirs: Any, *, score_tolerance: float = 1e-5) -> dict[str, Any]:
    """How far two sets of detections ``(B, K, 6)`` of the same images differ (an export against ``detect``).

    Rows with ``class_id >= 0`` are detections, in any order. Each detection of
    ``ours`` is paired with the detection of ``theirs`` of the same class whose
    score is within ``score_tolerance`` and whose box is nearest (two runtimes
    may order detections of near-equal scores differently).

    Parameters
    ----------
    ours, theirs : numpy.ndarray or NDArray
        Detections ``(B, K, 6)`` and ``(B, K', 6)``: ``[class_id, score, xmin, ymin, xmax, ymax]``.
    score_tolerance : float, default 1e-5

    Returns
    -------
    dict
        ``max_box_error`` and ``max_score_error`` over the paired detections (0 when there
        are none), ``mismatched_images`` (the indices of the images whose detections differ in
        number, or have one without a partner) and ``num_detections`` (of ``theirs``).

    Examples
    --------
    >>> import numpy as np
    >>> from detkit.testing import compare_detections
    >>> a = np.array([[[0, 0.9, 0.1, 0.1, 0.5, 0.5], [0, 0.9, 0.6, 0.6, 0.9, 0.9], [-1] * 6]])
    >>> b = a[:, [1, 0, 2]] + np.array([0, 0, 1e-6, 0, 0, 0])     # another order, a tiny difference
    >>> compare_detections(a, b)["mismatched_images"], compare_detections(a, b)["max_box_error"] < 1e-5
    ([], True)
    """
    ours, theirs = _as_numpy(ours), _as_numpy(theirs)
    if ours.ndim != 3 or theirs.ndim != 3 or ours.shape[0] != theirs.shape[0] or ours.shape[2] != 6:
        raise InputError(f"Both detections must be (B, K, 6) of the same B; got {ours.shape} and {theirs.shape}.")
    box_error = score_error = 0.0
    mismatched: list[int] = []
    total = 0
    for index, (a, b) in enumerate(zip(ours, theirs)):
        a, b = a[a[:, 0] >= 0], b[b[:, 0] >= 0]
        total += len(b)
        if len(a) != len(b):
            mismatched.append(index)
            continue
        if not len(a):
            continue
        # (len(a), len(b)): a pair is possible where the classes agree and the scores are within the tolerance.
        scores = np.abs(a[:, None, 1] - b[None, :, 1])
        possible = (a[:, None, 0] == b[None, :, 0]) & (scores <= score_tolerance)
        boxes = np.where(possible, np.abs(a[:, None, 2:] - b[None, :, 2:]).max(axis=2), np.inf)
        nearest = boxes.min(axis=1)
        if not np.isfinite(nearest).all() or not possible.any(axis=0).all():
            mismatched.append(index)
            continue
        box_error = max(box_error, float(nearest.max()))
        score_error = max(score_error, float(scores[np.arange(len(a)), boxes.argmin(axis=1)].max()))
    return {"max_box_error": box_error, "max_score_error": score_error, "mismatched_images": mismatched,
            "num_detections": total}


def _check_export_parity(component: Component, ctx: mx.Context) -> None:
    """A detector with the component exports to ONNX, and ONNX Runtime computes what MXNet does.

    Runs for a backbone or post-processor that claims export (``exports_onnx``)
    and for every anchor generator (its anchors become a constant), when the
    ``onnx`` and ``onnxruntime`` packages are installed (the ``onnx`` extra).
    Checked in two parts, so that rounding in the network cannot reorder
    near-equal scores: the network's predictions in ONNX Runtime equal MXNet's
    (relative 1e-4), and the exported post-processing of those predictions, with
    the exported anchors, equals the post-processor's in MXNet on the same
    predictions and MXNet's anchors (the same detections, scores within 1e-5,
    boxes within 1e-4).
    """
    kind = component.kind
    if not getattr(component, "exports_onnx", True):
        return  # it declares that it cannot export: a detector with it fails with an ExportError that says so
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return
    from .errors import ExportError

    copy = _clone(component, ctx, initialize=False)
    size = _input_size(copy, kind)
    with _registered(copy, kind):
        detector = _build_detector(copy, kind, ctx, size)
        images, _ = _training_batch(max(size, detector.min_input_size), ctx)
        anchors, class_preds, box_preds = detector(images)
        with tempfile.TemporaryDirectory(prefix="detkit-conformance-") as directory:
            try:
                graph_file, manifest_file = detector.export(directory, format="onnx")
            except ExportError as error:
                raise ConformanceError(f"it claims ONNX export, but exporting a detector with it fails: {error}") \
                    from None
            model = onnx.load(str(graph_file))
            body_outputs = json.loads(manifest_file.read_text(encoding="utf-8"))["body_outputs"]
            post_file = os.path.join(directory, "post.onnx")  # predictions -> detections, the anchors inside
            onnx.utils.extract_model(str(graph_file), post_file, body_outputs, ["detections"])
            post = onnxruntime.InferenceSession(post_file, providers=["CPUExecutionProvider"])
    model.graph.output.extend([onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                               for name in body_outputs])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    _, onnx_classes, onnx_boxes = session.run(None, {"data": images.asnumpy()})
    for name, ours, theirs in (("class", onnx_classes, class_preds.asnumpy()), ("box", onnx_boxes, box_preds.asnumpy())):
        scale = max(1.0, float(np.abs(theirs).max()))
        if ours.shape != theirs.shape or np.abs(ours - theirs).max() > 1e-4 * scale:
            raise ConformanceError(f"the ONNX export's {name} predictions differ from the network's in MXNet")
    # Post-processing on predictions whose scores are well apart (an untrained network's may tie within
    # rounding, and then either order is right): the same detections from the same predictions.
    rng = np.random.RandomState(0)
    classes = rng.normal(0, 3, class_preds.shape).astype("float32")
    boxes = rng.normal(0, 1, box_preds.shape).astype("float32")
    detections = post.run(None, dict(zip(body_outputs, (classes, boxes))))[0]
    expected = detector.post_processor(mx.nd.array(classes, ctx=ctx), mx.nd.array(boxes, ctx=ctx), anchors).asnumpy()
    found = compare_detections(detections, expected)
    if found["mismatched_images"] or found["max_box_error"] > 1e-4:
        raise ConformanceError(
            f"the ONNX export's detections of image {(found['mismatched_images'] or [0])[0]} differ from the "
            f"post-processor's in MXNet on the same predictions: other detections, or boxes {found['max_box_error']:.1e} "
            "apart (at most 1e-4; scores within 1e-5)"
        )


@contextlib.contextmanager
def _registered(component: Component, kind: str) -> Iterator[None]:
    """Make ``type(component)`` known to the registry (a temporary plugin) unless a plugin registers it."""
    if _get_registry().find(kind, component) is not None:
        yield
        return
    cls = type(component)
    component_name = f"_conformance_{cls.__module__}.{cls.__qualname__}"
    plugin_name = f"detkit.testing:{component_name}"

    def register_components(register: Any) -> None:
        register(component_name, cls)

    plugin = types.SimpleNamespace(**{KINDS[kind][1]: hookimpl(register_components)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        info = register_plugin(plugin, plugin_name)
    try:
        if info.status != ACTIVE:
            raise ConformanceError(f"registering {cls.__qualname__} as a {kind} fails: {info.reason}")
        yield
    finally:
        if info.status == ACTIVE:
            unregister_plugin(plugin_name)


# -- backbone -------------------------------------------------------------------------------


def _positive_ints(values: Any, what: str) -> list[int]:
    try:
        values = list(values)
    except TypeError:
        raise ConformanceError(f"{what} must be a sequence of positive ints; got {values!r}") from None
    if not values or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values):
        raise ConformanceError(f"{what} must be a non-empty sequence of positive ints; got {values!r}")
    return [int(v) for v in values]


def _check_backbone_declarations(component: Backbone, ctx: mx.Context) -> None:
    channels = _positive_ints(component.out_channels, "out_channels")
    strides = _positive_ints(component.out_strides, "out_strides")
    if len(channels) != len(strides):
        raise ConformanceError(
            f"out_channels {channels} and out_strides {strides} must have one entry per feature map each"
        )
    if strides != sorted(strides):
        raise ConformanceError(f"out_strides {strides} must not decrease: feature maps come highest resolution first")


def _backbone_sizes(component: Backbone) -> list[tuple[int, int]]:
    stride = int(list(component.out_strides)[-1])
    side = stride * max(2, math.ceil(32 / stride))
    return [(side, side), (side, side + stride * max(1, 16 // stride))]


def _check_backbone_outputs(component: Backbone, ctx: mx.Context) -> None:
    _check_backbone_declarations(component, ctx)
    copy = _clone(component, ctx)
    channels, strides = list(copy.out_channels), list(copy.out_strides)
    for height, width in _backbone_sizes(copy):
        x = mx.nd.random.uniform(-1, 1, (_BATCH, 3, height, width), ctx=ctx)
        maps = _as_list(copy(x), "hybrid_forward")
        if len(maps) != len(channels):
            raise ConformanceError(
                f"for input {x.shape} it returns {len(maps)} feature maps; out_channels declares {len(channels)}"
            )
        for index, (feature, c, s) in enumerate(zip(maps, channels, strides)):
            expected = (_BATCH, c, height // s, width // s)
            _check_array(feature, expected,
                         f"feature map {index} for input {x.shape} (out_channels[{index}]={c}, "
                         f"out_strides[{index}]={s})")


def _check_backbone_hybridizes(component: Backbone, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    height, width = _backbone_sizes(copy)[0]
    _check_hybrid(copy, ctx, [mx.nd.random.uniform(-1, 1, (_BATCH, 3, height, width), ctx=ctx)], "the backbone")


def _check_backbone_gradients(component: Backbone, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    height, width = _backbone_sizes(copy)[0]
    x = mx.nd.random.uniform(-1, 1, (_BATCH, 3, height, width), ctx=ctx)
    x.attach_grad()
    with autograd.record():
        maps = _as_list(copy(x), "hybrid_forward")
        # A random projection of every map: a plain sum would hide a BatchNorm's scale gradient.
        total = mx.nd.add_n(*[(m * mx.nd.random.normal(shape=m.shape, ctx=ctx)).sum() for m in maps])
    total.backward()
    gradient = x.grad.asnumpy()
    if not np.isfinite(gradient).all() or not gradient.any():
        raise ConformanceError(
            "the gradient of its feature maps with respect to the input images is zero or not finite"
        )
    _check_parameter_gradients(copy, "backpropagating from every feature map")


# -- anchor generator ------------------------------------------------------------------------


def _feature_maps(num_scales: int, ctx: mx.Context, batch: int = _BATCH, value: float | None = None) -> list[Any]:
    maps = []
    for scale in range(num_scales):
        side = max(1, 8 >> scale)
        shape = (batch, 4, side, side)
        maps.append(mx.nd.full(shape, value, ctx=ctx) if value is not None
                    else mx.nd.random.uniform(shape=shape, ctx=ctx))
    return maps


def _check_anchor_generator_declarations(component: AnchorGenerator, ctx: mx.Context) -> None:
    anchors = _positive_ints(component.num_anchors, "num_anchors")
    if component.num_scales != len(anchors):
        raise ConformanceError(f"num_scales is {component.num_scales}; num_anchors has {len(anchors)} entries")


def _check_anchor_generator_outputs(component: AnchorGenerator, ctx: mx.Context) -> None:
    _check_anchor_generator_declarations(component, ctx)
    copy = _clone(component, ctx)
    maps = _feature_maps(copy.num_scales, ctx)
    expected = sum(m.shape[2] * m.shape[3] * a for m, a in zip(maps, copy.num_anchors))
    anchors = _check_array(copy(*maps), (1, expected, 4),
                           f"the anchors for feature maps {[m.shape[2:] for m in maps]} with num_anchors "
                           f"{list(copy.num_anchors)}")
    corners = anchors[0]
    if (corners[:, 2] < corners[:, 0]).any() or (corners[:, 3] < corners[:, 1]).any():
        raise ConformanceError(
            "some anchors are not in corner format (xmin, ymin, xmax, ymax): xmax < xmin or ymax < ymin"
        )
    centres = (corners[:, :2] + corners[:, 2:]) / 2
    if (centres < -1e-6).any() or (centres > 1 + 1e-6).any():
        raise ConformanceError("some anchor centres lie outside [0, 1]: anchors must be normalised to the image")
    other = copy(*_feature_maps(copy.num_scales, ctx, batch=1, value=5.0))
    if not _close(other.asnumpy(), anchors):
        raise ConformanceError(
            "the anchors change with the feature maps' values or batch size; they may depend on shapes only"
        )


def _check_anchor_generator_hybridizes(component: AnchorGenerator, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    _check_hybrid(copy, ctx, _feature_maps(copy.num_scales, ctx), "the anchor generator")


# -- target assigner ------------------------------------------------------------------------


def _grid_anchors(ctx: mx.Context) -> mx.nd.NDArray:
    """56 anchors: a 4x4 and a 2x2 grid, 3 shapes a position; ``(1, 60, 4)``."""
    small = mx.nd.contrib.MultiBoxPrior(mx.nd.zeros((1, 1, 4, 4), ctx=ctx), sizes=[0.3, 0.4], ratios=[1, 2])
    large = mx.nd.contrib.MultiBoxPrior(mx.nd.zeros((1, 1, 2, 2), ctx=ctx), sizes=[0.6, 0.8], ratios=[1, 2])
    return mx.nd.concat(small, large, dim=1)


#: The anchor the checks place a ground-truth box on, and that box's class id.
_MATCHED_ANCHOR, _MATCHED_CLASS = 5, 1


def _assigner_inputs(ctx: mx.Context) -> tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]:
    anchors = _grid_anchors(ctx)
    box = np.clip(anchors[0, _MATCHED_ANCHOR].asnumpy(), 0, 1)
    labels = np.full((_BATCH, 3, 5), -1, dtype="float32")
    labels[0, 0] = [_MATCHED_CLASS, *box]
    labels[0, 1] = [0, 0.55, 0.5, 0.95, 0.9]
    # Sample 1 has no object at all: every row is padding.
    class_preds = mx.nd.random.normal(shape=(_BATCH, anchors.shape[1], len(_CLASSES) + 1), ctx=ctx)
    return anchors, mx.nd.array(labels, ctx=ctx), class_preds


def _check_target_assigner_outputs(component: TargetAssigner, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    anchors, labels, class_preds = _assigner_inputs(ctx)
    n = anchors.shape[1]
    outputs = _as_list(copy(anchors, labels, class_preds), "the target assigner")
    if len(outputs) != 3:
        raise ConformanceError(f"it returns {len(outputs)} arrays; expected (box_targets, box_mask, class_targets)")
    box_targets = _check_array(outputs[0], (_BATCH, n * 4), "box_targets")
    box_mask = _check_array(outputs[1], (_BATCH, n * 4), "box_mask")
    class_targets = _check_array(outputs[2], (_BATCH, n), "class_targets")
    del box_targets
    if not np.isin(box_mask, (0, 1)).all():
        raise ConformanceError("box_mask must hold only 0 and 1")
    per_anchor = box_mask.reshape(_BATCH, n, 4)
    if not (per_anchor == per_anchor[:, :, :1]).all():
        raise ConformanceError("box_mask must be equal over the 4 offsets of an anchor")
    allowed = np.arange(-1, len(_CLASSES) + 1)
    if not np.isin(class_targets, allowed).all():
        raise ConformanceError(
            f"class_targets must be -1 (ignore), 0 (background) or class_id + 1; got values "
            f"{sorted(set(np.unique(class_targets)) - set(allowed))[:5]} with {len(_CLASSES)} classes"
        )
    if (per_anchor[:, :, 0] > 0).any() and (class_targets[per_anchor[:, :, 0] > 0] < 1).any():
        raise ConformanceError("box_mask is 1 for an anchor whose class target is not an object")
    if class_targets[0, _MATCHED_ANCHOR] != _MATCHED_CLASS + 1 or per_anchor[0, _MATCHED_ANCHOR, 0] != 1:
        raise ConformanceError(
            f"an anchor that coincides with a ground-truth box of class {_MATCHED_CLASS} must get class target "
            f"{_MATCHED_CLASS + 1} and box_mask 1; got {class_targets[0, _MATCHED_ANCHOR]} and "
            f"{per_anchor[0, _MATCHED_ANCHOR, 0]}"
        )
    if (class_targets[1] > 0).any() or per_anchor[1].any():
        raise ConformanceError("an image without objects (all label rows -1) must get no object target and no box_mask")


#: Boxes of the encoding checks, ``(class_id, xmin, ymin, xmax, ymax)`` in [0, 1]: apart, one per class.
_KNOWN_BOXES = np.array([[0, 0.08, 0.12, 0.42, 0.38], [1, 0.52, 0.46, 0.93, 0.88]], dtype="float32")
_ENCODING = ("tx = (gx - ax) / aw / v0, ty = (gy - ay) / ah / v1, tw = log(gw / aw) / v2, th = log(gh / ah) / v3 "
             "(detkit.interfaces.TargetAssigner)")


def _variances(component: Component) -> list[float]:
    """The component's own ``variances`` argument, else the default target assigner's."""
    value = component.get_config().get("variances")
    if isinstance(value, (list, tuple)) and len(value) == 4:
        return [float(v) for v in value]
    return list(_DEFAULT_VARIANCES)  # the default target assigner's (MultiBoxTarget's)


def _encode(anchors: np.ndarray, boxes: np.ndarray, variances: Sequence[float]) -> np.ndarray:
    """The documented encoding of corner ``boxes`` (K, 4) against corner ``anchors`` (K, 4): (K, 4)."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    gw, gh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    gx, gy = boxes[:, 0] + gw / 2, boxes[:, 1] + gh / 2
    v0, v1, v2, v3 = variances
    return np.stack([(gx - ax) / aw / v0, (gy - ay) / ah / v1, np.log(gw / aw) / v2, np.log(gh / ah) / v3], axis=1)


def _known_labels(ctx: mx.Context) -> mx.nd.NDArray:
    labels = np.full((_BATCH, 3, 5), -1, dtype="float32")
    labels[0, :len(_KNOWN_BOXES)] = _KNOWN_BOXES
    return mx.nd.array(labels, ctx=ctx)


def _check_target_assigner_encoding(component: TargetAssigner, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    anchors = _grid_anchors(ctx)
    n = anchors.shape[1]
    class_preds = mx.nd.random.normal(shape=(_BATCH, n, len(_CLASSES) + 1), ctx=ctx)
    outputs = _as_list(copy(anchors, _known_labels(ctx), class_preds), "the target assigner")
    box_targets = _check_array(outputs[0], (_BATCH, n * 4), "box_targets").reshape(_BATCH, n, 4)[0]
    box_mask = _check_array(outputs[1], (_BATCH, n * 4), "box_mask").reshape(_BATCH, n, 4)[0, :, 0]
    class_targets = _check_array(outputs[2], (_BATCH, n), "class_targets")[0]
    variances = _variances(component)
    for class_id, *box in _KNOWN_BOXES:
        matched = np.flatnonzero((box_mask > 0) & (class_targets == class_id + 1))
        if not len(matched):
            raise ConformanceError(f"no anchor is assigned the box {np.round(box, 4).tolist()} of class {int(class_id)}")
        expected = _encode(anchors[0].asnumpy()[matched], np.tile(np.array(box, "float32"), (len(matched), 1)),
                           variances)
        actual = box_targets[matched]
        if not np.allclose(actual, expected, rtol=1e-3, atol=1e-4):
            worst = int(np.argmax(np.abs(actual - expected).max(axis=1)))
            raise ConformanceError(
                f"the box {np.round(box, 4).tolist()} on anchor {anchors[0, matched[worst]].asnumpy().round(4).tolist()} "
                f"must be encoded as {expected[worst].round(4).tolist()} by {_ENCODING} with variances {variances}; "
                f"got {actual[worst].round(4).tolist()}"
            )


def _check_target_assigner_blocks_gradients(component: TargetAssigner, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    anchors, labels, class_preds = _assigner_inputs(ctx)
    class_preds.attach_grad()
    with autograd.record():
        outputs = _as_list(copy(anchors, labels, class_preds), "the target assigner")
        total = mx.nd.add_n(*[(o * mx.nd.random.normal(shape=o.shape, ctx=ctx)).sum() for o in outputs])
    total.backward()
    if class_preds.grad.asnumpy().any():
        raise ConformanceError("a gradient flows from the targets into the class predictions; wrap them in F.BlockGrad")


def _check_target_assigner_hybridizes(component: TargetAssigner, ctx: mx.Context) -> None:
    _check_hybrid(_clone(component, ctx), ctx, list(_assigner_inputs(ctx)), "the target assigner")


# -- loss -------------------------------------------------------------------------------------

#: Anchors of the loss checks.
_N = 40
#: Sample 0: positives (anchor -> class target) and ignored anchors; sample 1 has no positive.
_POSITIVES = {0: 1, 1: 2, 2: 1, 7: 2}
_IGNORED = (3, 4, 5)


def _loss_inputs(ctx: mx.Context) -> dict[str, Any]:
    rng = np.random.RandomState(1)
    classes = len(_CLASSES) + 1
    class_targets = np.zeros((_BATCH, _N), dtype="float32")
    box_mask = np.zeros((_BATCH, _N, 4), dtype="float32")
    box_targets = np.zeros((_BATCH, _N, 4), dtype="float32")
    for anchor, target in _POSITIVES.items():
        class_targets[0, anchor] = target
        box_mask[0, anchor] = 1
        box_targets[0, anchor] = rng.normal(0, 1, 4)
    class_targets[0, list(_IGNORED)] = -1
    class_targets[1, list(_IGNORED)] = -1
    return {
        "class_preds": rng.normal(0, 1, (_BATCH, _N, classes)).astype("float32"),
        "box_preds": rng.normal(0, 1, (_BATCH, _N * 4)).astype("float32"),
        "class_targets": class_targets,
        "box_targets": box_targets.reshape(_BATCH, _N * 4),
        "box_mask": box_mask.reshape(_BATCH, _N * 4),
    }


_LOSS_ARGUMENTS = ("class_preds", "box_preds", "class_targets", "box_targets", "box_mask")


def _run_loss(component: Loss, inputs: dict[str, Any], ctx: mx.Context) -> list[np.ndarray]:
    arrays = [mx.nd.array(inputs[name], ctx=ctx, dtype="float32") for name in _LOSS_ARGUMENTS]
    return [o.asnumpy() for o in _as_list(component(*arrays), "the loss")]


def _check_loss_declarations(component: Loss, ctx: mx.Context) -> None:
    names = list(component.term_names)
    if not all(isinstance(name, str) and name for name in names) or len(set(names)) != len(names):
        raise ConformanceError(f"term_names must be distinct non-empty strings; got {names!r}")


def _check_loss_outputs(component: Loss, ctx: mx.Context) -> None:
    _check_loss_declarations(component, ctx)
    copy = _clone(component, ctx)
    inputs = _loss_inputs(ctx)
    arrays = [mx.nd.array(inputs[name], ctx=ctx) for name in _LOSS_ARGUMENTS]
    outputs = _as_list(copy(*arrays), "the loss")
    names = ["loss", *copy.term_names]
    if len(outputs) != len(names):
        raise ConformanceError(
            f"it returns {len(outputs)} arrays; expected the loss and one per term_names {list(copy.term_names)}"
        )
    for name, output in zip(names, outputs):
        _check_array(output, (_BATCH,), f"the {name!r} output")


def _check_loss_ignores_ignored_anchors(component: Loss, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    inputs = _loss_inputs(ctx)
    expected = _run_loss(copy, inputs, ctx)
    changed = {key: value.copy() for key, value in inputs.items()}
    rng = np.random.RandomState(2)
    ignored = list(_IGNORED)
    changed["class_preds"][:, ignored] = rng.normal(0, 5, changed["class_preds"][:, ignored].shape)
    unmasked = changed["box_mask"] == 0
    changed["box_preds"][unmasked] = rng.normal(0, 5, int(unmasked.sum()))
    for name, a, b in zip(["loss", *copy.term_names], _run_loss(copy, changed, ctx), expected):
        if not _close(a, b):
            raise ConformanceError(
                f"the {name!r} output changes with the class predictions of anchors whose class target is -1, "
                "or with box predictions where box_mask is 0; those must not count"
            )


def _check_loss_per_sample(component: Loss, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    inputs = _loss_inputs(ctx)
    together = _run_loss(copy, inputs, ctx)
    for sample in range(_BATCH):
        alone = _run_loss(copy, {key: value[sample:sample + 1] for key, value in inputs.items()}, ctx)
        for name, a, b in zip(["loss", *copy.term_names], alone, together):
            if not _close(a, b[sample:sample + 1]):
                raise ConformanceError(
                    f"the {name!r} output of sample {sample} differs when computed alone ({a[0]:.6g}) and in a "
                    f"batch ({b[sample]:.6g}); a loss per sample must depend on that sample only"
                )


def _check_loss_prefers_correct_predictions(component: Loss, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    inputs = _loss_inputs(ctx)
    random_loss = _run_loss(copy, inputs, ctx)[0]
    perfect = {key: value.copy() for key, value in inputs.items()}
    one_hot = np.eye(len(_CLASSES) + 1, dtype="float32")[np.maximum(inputs["class_targets"], 0).astype(int)]
    perfect["class_preds"] = 12 * one_hot
    perfect["box_preds"] = inputs["box_targets"].copy()
    perfect_loss = _run_loss(copy, perfect, ctx)[0]
    if not perfect_loss[0] < random_loss[0] or not perfect_loss[1] <= random_loss[1] + _ATOL:
        raise ConformanceError(
            f"correct predictions score {perfect_loss} and random ones {random_loss}; correct predictions must "
            "score lower (the loss is minimised)"
        )


def _check_loss_gradients(component: Loss, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    inputs = _loss_inputs(ctx)
    arrays = [mx.nd.array(inputs[name], ctx=ctx) for name in _LOSS_ARGUMENTS]
    arrays[0].attach_grad()
    arrays[1].attach_grad()
    with autograd.record():
        total = _as_list(copy(*arrays), "the loss")[0].sum()
    total.backward()
    class_gradient, box_gradient = arrays[0].grad.asnumpy(), arrays[1].grad.asnumpy()
    positives = list(_POSITIVES)
    if not np.isfinite(class_gradient).all() or not class_gradient[0, positives].any():
        raise ConformanceError("no finite gradient flows to the class predictions of positive anchors")
    masked = inputs["box_mask"] > 0
    if not np.isfinite(box_gradient).all() or not box_gradient[masked].any():
        raise ConformanceError("no finite gradient flows to the box predictions where box_mask is 1")
    if copy.collect_params():
        _check_parameter_gradients(copy, "backpropagating from the loss")


def _check_loss_hybridizes(component: Loss, ctx: mx.Context) -> None:
    inputs = _loss_inputs(ctx)
    _check_hybrid(_clone(component, ctx), ctx, [mx.nd.array(inputs[n], ctx=ctx) for n in _LOSS_ARGUMENTS], "the loss")


# -- post-processor ---------------------------------------------------------------------------


def _post_inputs(ctx: mx.Context) -> tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]:
    anchors = _grid_anchors(ctx)
    n = anchors.shape[1]
    class_preds = np.zeros((_BATCH, n, len(_CLASSES) + 1), dtype="float32")
    class_preds[:, :, 0] = 12  # background everywhere ...
    class_preds[0, _MATCHED_ANCHOR] = 0
    class_preds[0, _MATCHED_ANCHOR, _MATCHED_CLASS + 1] = 12  # ... but one confident object
    box_preds = np.zeros((_BATCH, n * 4), dtype="float32")
    return mx.nd.array(class_preds, ctx=ctx), mx.nd.array(box_preds, ctx=ctx), anchors


def _check_post_processor_outputs(component: PostProcessor, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    class_preds, box_preds, anchors = _post_inputs(ctx)
    output = copy(class_preds, box_preds, anchors)
    if not isinstance(output, mx.nd.NDArray) or output.ndim != 3:
        raise ConformanceError(f"it must return detections (B, K, 6); got {getattr(output, 'shape', output)!r}")
    detections = _check_array(output, (_BATCH, output.shape[1], 6), "the detections")
    ids = detections[:, :, 0]
    valid = ids >= 0
    if not np.isin(ids, np.arange(-1, len(_CLASSES))).all():
        raise ConformanceError(
            f"class ids must be -1 (no detection) or 0..{len(_CLASSES) - 1} (the background is never reported); "
            f"got {sorted(set(np.unique(ids)))[:6]}"
        )
    scores = detections[:, :, 1][valid]
    if ((scores < 0) | (scores > 1)).any():
        raise ConformanceError("detection scores must lie in [0, 1]")
    boxes = detections[:, :, 2:][valid]
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ConformanceError("detection boxes must be in corner format (xmin, ymin, xmax, ymax)")
    best = int(np.argmax(np.where(valid[0], detections[0, :, 1], -1)))
    row = detections[0, best]
    anchor = anchors[0, _MATCHED_ANCHOR].asnumpy()
    if row[0] != _MATCHED_CLASS or row[1] < 0.5 or not np.allclose(row[2:], anchor, atol=1e-3):
        raise ConformanceError(
            f"a confident class-{_MATCHED_CLASS} prediction with zero box offsets on anchor {anchor.round(4).tolist()} "
            f"must be the best detection, at that anchor; got {row.round(4).tolist()}"
        )
    if (valid[1] & (detections[1, :, 1] >= 0.5)).any():
        raise ConformanceError(
            "an image whose predictions are all confidently background must give no detection above 0.5"
        )


def _check_post_processor_decodes_the_encoding(component: PostProcessor, ctx: mx.Context) -> None:
    copy = _clone(component, ctx)
    variances = _variances(component)
    anchors = _grid_anchors(ctx)
    n = anchors.shape[1]
    # The default target assigner encodes the known boxes ...
    assigner = _get_registry().build("target_assigner", "multibox_target", {"variances": variances})
    assigner.initialize(ctx=ctx)
    class_preds = mx.nd.zeros((_BATCH, n, len(_CLASSES) + 1), ctx=ctx)
    box_targets, box_mask, class_targets = _as_list(assigner(anchors, _known_labels(ctx), class_preds), "")
    targets = class_targets.asnumpy() * (box_mask.asnumpy().reshape(_BATCH, n, 4)[:, :, 0] > 0)
    # ... and the post-processor sees those offsets with a confident prediction of the box's class on each
    # anchor that holds one, background everywhere else.
    scores = np.zeros((_BATCH, n, len(_CLASSES) + 1), dtype="float32")
    scores[:, :, 0] = 12
    batch, anchor = np.nonzero(targets > 0)
    scores[batch, anchor, 0] = 0
    scores[batch, anchor, targets[batch, anchor].astype(int)] = 12
    output = copy(mx.nd.array(scores, ctx=ctx), box_targets, anchors)
    if not isinstance(output, mx.nd.NDArray) or output.ndim != 3 or output.shape[-1] != 6:
        raise ConformanceError(f"it must return detections (B, K, 6); got {getattr(output, 'shape', output)!r}")
    detections = output.asnumpy()[0]
    confident = detections[(detections[:, 0] >= 0) & (detections[:, 1] >= 0.5)]
    for class_id, *box in _KNOWN_BOXES:
        mine = confident[confident[:, 0] == class_id]
        if not len(mine) or not np.isclose(mine[:, 2:], box, atol=1e-3).all(axis=1).any():
            nearest = (mine[np.argmin(np.abs(mine[:, 2:] - box).max(axis=1)), 2:].round(4).tolist() if len(mine)
                       else "no detection of that class")
            raise ConformanceError(
                f"offsets that the default target assigner encodes for the box {np.round(box, 4).tolist()} of class "
                f"{int(class_id)} ({_ENCODING}, variances {variances}) must decode to that box; got {nearest}"
            )
    for row in confident:
        if not any(row[0] == class_id and np.allclose(row[2:], box, atol=1e-3) for class_id, *box in _KNOWN_BOXES):
            raise ConformanceError(
                f"a confident detection {row.round(4).tolist()} is none of the encoded boxes "
                f"{_KNOWN_BOXES.round(4).tolist()}; decode by {_ENCODING}"
            )


def _check_post_processor_clips(component: PostProcessor, ctx: mx.Context) -> None:
    """Confident predictions that decode past the image's edges must come out clipped to [0, 1]."""
    anchors = _grid_anchors(ctx)
    n = anchors.shape[1]
    class_preds = np.zeros((_BATCH, n, len(_CLASSES) + 1), dtype="float32")
    class_preds[:, :, 0] = 12  # background everywhere but one anchor an image:
    box_preds = np.zeros((_BATCH, n, 4), dtype="float32")
    # Image 0: the top-left anchor moved up and left and widened; image 1: the last (large) anchor moved
    # down and right and widened. Either decodes to a box that reaches past the image's edges.
    for image, anchor, shift in ((0, 0, -5.0), (1, n - 1, 5.0)):
        class_preds[image, anchor] = 0
        class_preds[image, anchor, _MATCHED_CLASS + 1] = 12
        box_preds[image, anchor] = [shift, shift, 5.0, 5.0]
    output = _clone(component, ctx)(mx.nd.array(class_preds, ctx=ctx), mx.nd.array(box_preds.reshape(_BATCH, -1),
                                                                                    ctx=ctx), anchors)
    detections = _check_array(output, (_BATCH, output.shape[1], 6), "the detections")
    valid = detections[:, :, 0] >= 0
    if not (valid & (detections[:, :, 1] >= 0.5)).any(axis=1).all():
        raise ConformanceError("a confident prediction whose box reaches past the image's edges must still be "
                               "detected (clipped to the image)")
    boxes = detections[:, :, 2:][valid]
    if ((boxes < -1e-6) | (boxes > 1 + 1e-6)).any():
        raise ConformanceError(
            "detection boxes must be clipped to the image ([0, 1]); got corners from "
            f"{boxes.min():.3g} to {boxes.max():.3g} (MultiBoxDetection: clip=True)"
        )


def _check_post_processor_hybridizes(component: PostProcessor, ctx: mx.Context) -> None:
    _check_hybrid(_clone(component, ctx), ctx, list(_post_inputs(ctx)), "the post-processor")


_COMMON: tuple[Callable[..., None], ...] = (_check_config_round_trip,)
_DETECTOR: tuple[Callable[..., None], ...] = (_check_trains_in_detector, _check_detector_round_trip)
#: Components of the exported inference graph; a target assigner and a loss serve training only.
_EXPORT: tuple[Callable[..., None], ...] = (_check_export_parity,)

_CHECKS: dict[str, tuple[Callable[..., None], ...]] = {
    "backbone": _COMMON + (
        _check_backbone_declarations, _check_backbone_outputs, _check_backbone_hybridizes,
        _check_backbone_gradients,
    ) + _DETECTOR + _EXPORT,
    "anchor_generator": _COMMON + (
        _check_anchor_generator_declarations, _check_anchor_generator_outputs, _check_anchor_generator_hybridizes,
    ) + _DETECTOR + _EXPORT,
    "target_assigner": _COMMON + (
        _check_target_assigner_outputs, _check_target_assigner_blocks_gradients, _check_target_assigner_hybridizes,
        _check_target_assigner_encoding,
    ) + _DETECTOR,
    "loss": _COMMON + (
        _check_loss_declarations, _check_loss_outputs, _check_loss_ignores_ignored_anchors, _check_loss_per_sample,
        _check_loss_prefers_correct_predictions, _check_loss_gradients, _check_loss_hybridizes,
    ) + _DETECTOR,
    "post_processor": _COMMON + (
        _check_post_processor_outputs, _check_post_processor_clips, _check_post_processor_hybridizes,
        _check_post_processor_decodes_the_encoding,
    ) + _DETECTOR + _EXPORT,
}
