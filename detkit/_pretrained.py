"""ImageNet weights of Gluon model zoo networks, for backbones to start from: written once, for every plugin.

:func:`pretrained_parameters` reads the weights of a model zoo network from
MXNet's model store (downloading the file when it is missing) or from a file
the user gives; :func:`initialize_with` makes them the initial values of a
block's parameters, so that the detector's own ``initialize()`` keeps them;
:func:`initialize_pretrained` does both lazily: a backbone built only to be
checked (configuration validation, ``--print-config``) reads nothing, and the
file is read (or downloaded) when the detector initialises its parameters.
:class:`ImageNetInput` turns detkit's network input into the input the
ImageNet weights were trained on.

The download follows MXNet's model store (the URL
``$MXNET_GLUON_REPO/gluon/models/NAME-HASH.zip``, the file
``NAME-HASH.params`` in ``$MXNET_HOME/models``, its SHA-1 sum from
``mxnet.gluon.model_zoo.model_store``) but not its downloader, which has no
timeout, retries five times, prints to stdout and may leave a partial or
unverified file behind: here a download times out, and the file appears only
complete and verified.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import mxnet as mx
from mxnet.gluon.model_zoo import model_store, vision

from ._base import FetchFailed, PathLike, atomic_path, fetch, file_digest, make_dirs, scratch_folder
from .data import RGB_MEAN
from .errors import DownloadError, InputError

__all__ = ["GLUONCV_SSD_SHA1", "ImageNetInput", "gluoncv_model_file", "initialize_pretrained", "initialize_with",
           "pretrained_parameters"]

_CHUNK = 1 << 20
# The largest file of MXNet's model store is vgg19_bn's, about 550 MB: a download, or a zip member,
# above this is refused as it arrives rather than written out.
_MAX_WEIGHTS_BYTES = 2 << 30


def pretrained_parameters(
    name: str,
    *,
    weights: Optional[PathLike] = None,
    root: Optional[PathLike] = None,
) -> dict[str, mx.nd.NDArray]:
    """The ImageNet weights of the Gluon model zoo network ``name``, by parameter name.

    The values come from ``weights`` when it is given, otherwise from MXNet's
    model store: the file ``NAME-HASH.params`` in ``root``, downloaded there
    from ``$MXNET_GLUON_REPO/gluon/models/NAME-HASH.zip`` (default: Apache
    MXNet's repository) when it is missing or its SHA-1 sum is not the model
    store's. The download times out after 30 s without data, counts as stalled
    below 10 kB in a minute, refuses anything larger than 2 GiB as it arrives,
    and puts the file in place only once it is complete and verified. A process
    killed outright while downloading may leave a hidden ``.NAME-HASH.params.*.part``
    file and a ``.scratch.*.tmp`` folder in ``root``: delete them.

    Parameters
    ----------
    name : str
        A model store name (``mxnet.gluon.model_zoo.vision.get_model`` takes the
        same): ``"resnet18_v1"``, ``"mobilenet0.25"``, ``"mobilenetv2_1.0"``,
        ``"vgg16"``, ...
    weights : str or os.PathLike, optional
        A ``.params`` file of that network (``net.save_parameters``), such as the
        model store's file copied from a machine with network access. Read as
        given, without a SHA-1 check; nothing is downloaded.
    root : str or os.PathLike, optional
        The model store directory; default ``$MXNET_HOME/models`` (``~/.mxnet/models``).

    Returns
    -------
    dict of str to mxnet.nd.NDArray
        Every parameter of the network, on the CPU, named as in
        ``net.collect_params()`` without the network's prefix: ``"conv0_weight"``
        for ``resnetv10_conv0_weight``. Shapes are Gluon's: a convolution's
        weight is ``(out_channels, in_channels, kh, kw)``, a dense layer's
        ``(units, in_units)``. The values of a fresh network of the same name
        have the same names, whatever prefix Gluon gives it.

    Raises
    ------
    InputError
        If ``name`` is not in MXNet's model store, or ``weights`` does not exist
        or does not hold the parameters of ``name``.
    DownloadError
        If the model store's file is not in ``root`` and cannot be downloaded,
        or the download is not the model store's file; the message names the
        URL to fetch on another machine and where to put the file.
    StorageError
        If ``root`` cannot be written.

    Examples
    --------
    A file of your own (here a randomly initialised network, saved in the current
    folder) instead of the download:

    >>> import detkit, mxnet as mx
    >>> from mxnet.gluon.model_zoo import vision
    >>> net = vision.get_model("mobilenet0.25")
    >>> net.initialize()
    >>> net(mx.nd.zeros((1, 3, 32, 32))).shape
    (1, 1000)
    >>> net.save_parameters("mobilenet0.25.params")
    >>> values = detkit.pretrained_parameters("mobilenet0.25", weights="mobilenet0.25.params")
    >>> values["conv0_weight"].shape
    (8, 3, 3, 3)
    """
    path = _weights_path(name, weights)
    if path is None:
        path = _model_store_file(name, root)
    network = vision.get_model(name)
    try:
        network.load_parameters(str(path), ctx=mx.cpu())
    except (AssertionError, ValueError, mx.base.MXNetError) as error:
        detail = " ".join(str(error).split())[:400]
        raise InputError(f"The weights file {path} does not hold the parameters of {name}: {detail}") from None
    prefix = network.prefix
    return {key[len(prefix):]: parameter.data() for key, parameter in network.collect_params().items()}


def initialize_with(block: mx.gluon.Block, values: Union[Mapping[str, Any], Callable[[], Mapping[str, Any]]]) -> None:
    """Make ``values`` the initial values of ``block``'s parameters.

    Each parameter's initialiser becomes its value, so that a later
    ``initialize()`` — the detector's, with its own initialiser and context —
    gives the parameter that value on the detector's devices. Call it before the
    block is initialised (a block already initialised needs
    ``initialize(force_reinit=True)`` to take the values).

    ``values`` may be a function that returns them: then nothing is read now.
    The function is called once, when the first of the block's parameters is
    initialised (the detector's ``initialize()``; a parameter whose shape is not
    known yet is initialised at the first forward pass), and what it raises —
    a :class:`~detkit.errors.DownloadError`, say — reaches the caller of
    ``initialize()``. :func:`initialize_pretrained` passes such a function.

    Parameters
    ----------
    block : mxnet.gluon.Block
        Its parameters are matched by name without the block's prefix:
        ``vgg0_conv0_weight`` of a block with the prefix ``vgg0_`` takes
        ``values["conv0_weight"]``. A model zoo network therefore takes
        :func:`pretrained_parameters` of its name as they are.
    values : mapping of str to mxnet.nd.NDArray or numpy.ndarray, or a function returning one
        A value for every parameter of ``block``, of the parameter's shape
        (dimensions not known yet are taken from the value); values no
        parameter uses (a classifier's, say) are ignored.

    Raises
    ------
    InputError
        If a parameter has no value or a value of another shape, or a parameter's
        name does not start with the block's prefix (a block put together from
        parts of other networks: call this on each part). With a function, the
        prefix is checked now and the values when they are read.
    """
    prefix = block.prefix
    parameters = {}
    for key, parameter in block.collect_params().items():
        if not key.startswith(prefix):
            raise InputError(
                f"The parameter {key} does not start with the prefix {prefix!r} of the block it belongs to; "
                "call initialize_with on the network that made it."
            )
        parameters[key[len(prefix):]] = parameter
    if callable(values) and not isinstance(values, Mapping):
        source = _Source(prefix, parameters, values)
        for short, parameter in parameters.items():
            parameter.init = _Pending(source, short)
        return
    for short, value in _checked_values(prefix, parameters, values).items():
        parameters[short].init = _Loaded(value)


def initialize_pretrained(
    block: mx.gluon.Block,
    name: str,
    *,
    weights: Optional[PathLike] = None,
    root: Optional[PathLike] = None,
    convert: Optional[Callable[[dict[str, mx.nd.NDArray]], Mapping[str, Any]]] = None,
) -> None:
    """Start ``block`` from the ImageNet weights of the model zoo network ``name``, read when it is initialised.

    The lazy form of ``initialize_with(block, pretrained_parameters(name, ...))``:
    only the arguments are checked now (a backbone built to check a
    configuration reads and downloads nothing); the weights are read, or
    downloaded, once, when the block's parameters are first initialised — in a
    detector, by its constructor. Parameters whose shape is not known yet take
    the shape of the parameter of the same name of ``name`` (found without
    reading any file), so that they too are initialised by ``initialize()``.

    Parameters
    ----------
    block : mxnet.gluon.Block
        The model zoo network ``name`` (``vision.get_model(name)``), or, with
        ``convert``, any block whose parameters ``convert`` gives values for;
        matched by name without the block's prefix (see :func:`initialize_with`).
    name : str
        A model store name: ``"resnet18_v1"``, ``"mobilenet0.25"``, ``"vgg16"``, ...
    weights, root : str or os.PathLike, optional
        As for :func:`pretrained_parameters`: a ``.params`` file to read instead
        of the model store's, and the model store directory.
    convert : callable, optional
        Called once with the values of ``name`` (:func:`pretrained_parameters`)
        when they are read; returns the values of ``block``'s parameters.

    Raises
    ------
    InputError
        Now, if ``name`` is not in MXNet's model store or ``weights`` does not exist.
        Later, from ``initialize()``, the errors of :func:`pretrained_parameters`
        (``InputError``, ``DownloadError``, ``StorageError``) and of :func:`initialize_with`.

    Examples
    --------
    >>> import detkit
    >>> from mxnet.gluon.model_zoo import vision
    >>> network = vision.get_model("mobilenet0.25")
    >>> detkit.initialize_pretrained(network, "mobilenet0.25")    # reads nothing yet
    >>> network.features[0].weight.shape                           # known before the weights are read
    (8, 3, 3, 3)
    """
    _weights_path(name, weights)
    shapes = _zoo_shapes(name)
    prefix = block.prefix
    for key, parameter in block.collect_params().items():
        short = key[len(prefix):] if key.startswith(prefix) else None
        if short in shapes and (parameter.shape is None or 0 in tuple(parameter.shape)):
            known = tuple(parameter.shape or ())
            if not known or (len(known) == len(shapes[short])
                             and all(d in (0, v) for d, v in zip(known, shapes[short]))):
                parameter.shape = shapes[short]

    def load() -> Mapping[str, Any]:
        values = pretrained_parameters(name, weights=weights, root=root)
        return values if convert is None else convert(values)

    initialize_with(block, load)


class ImageNetInput(mx.gluon.HybridBlock):
    """detkit's network input turned into the input Gluon model zoo ImageNet weights expect.

    detkit's readers give RGB images on the 0-255 scale minus
    :data:`detkit.data.RGB_MEAN`; the model zoo's ImageNet weights were trained
    on ``(x / 255 - mean) / std`` with the ImageNet mean ``MEAN`` = (0.485,
    0.456, 0.406) and standard deviation ``STD`` = (0.229, 0.224, 0.225) (class
    attributes; per channel, RGB, on the 0-1 scale). This block computes,
    per channel, ``(x + RGB_MEAN - 255 * MEAN) / (255 * STD)``: put it first in a
    backbone cut from a model zoo network, whether or not it starts from the
    ImageNet weights, so that the architecture of a saved detector does not
    depend on where its initial weights came from.

    The constants are part of the graph: the block has no parameters, so
    nothing is saved, trained or decayed, and it runs on any context and in
    any precision. Input and output are ``(B, 3, H, W)``.

    Examples
    --------
    >>> import mxnet as mx
    >>> from detkit import ImageNetInput
    >>> from detkit.data import RGB_MEAN
    >>> block = ImageNetInput()
    >>> image = mx.nd.full((1, 3, 1, 1), 255.0) - mx.nd.array(RGB_MEAN).reshape((1, 3, 1, 1))   # white
    >>> [round(float(v), 3) for v in block(image).reshape(-1).asnumpy()]    # (1 - mean) / std
    [2.249, 2.429, 2.64]
    """

    #: The ImageNet per-channel mean (R, G, B) of images on the 0-1 scale.
    MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
    #: The ImageNet per-channel standard deviation (R, G, B) of images on the 0-1 scale.
    STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __init__(self, prefix: Optional[str] = None, params: Any = None) -> None:
        super().__init__(prefix=prefix, params=params)
        # x * scale + shift = (x + RGB_MEAN - 255 * MEAN) / (255 * STD), as Python floats in the graph.
        self._scale = tuple(1.0 / (255.0 * s) for s in self.STD)
        self._shift = tuple((m0 - 255.0 * m) / (255.0 * s) for m0, m, s in zip(RGB_MEAN, self.MEAN, self.STD))

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        channels = F.split(x, num_outputs=3, axis=1)  # three (B, 1, H, W)
        return F.concat(*[c * scale + shift for c, scale, shift in zip(channels, self._scale, self._shift)], dim=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.MEAN}, std={self.STD}, input_mean={tuple(RGB_MEAN)})"


def _checked_values(prefix: str, parameters: Mapping[str, Any], values: Any) -> dict[str, mx.nd.NDArray]:
    """The value of each parameter (short name -> CPU array of its dtype); its unknown dimensions set from it."""
    if not isinstance(values, Mapping):
        raise InputError(
            f"The values for the parameters of {prefix!r} must be a mapping of parameter names to arrays; "
            f"got a {type(values).__name__} instead."
        )
    checked = {}
    for short, parameter in parameters.items():
        if short not in values:
            raise InputError(
                f"There is no value for the parameter {short!r} of {prefix!r} among {len(values)} values "
                f"(such as {', '.join(sorted(values)[:3]) or 'none'}); give one for every parameter of the block."
            )
        value = values[short]
        value = value.as_in_context(mx.cpu()) if isinstance(value, mx.nd.NDArray) else mx.nd.array(value)
        shape = tuple(parameter.shape) if parameter.shape is not None else None
        if shape is not None and (
            len(shape) != len(value.shape) or any(d not in (0, v) for d, v in zip(shape, value.shape))
        ):
            raise InputError(
                f"The value for the parameter {short!r} of {prefix!r} has the shape {tuple(value.shape)}; "
                f"the parameter's is {shape} (0: not known yet)."
            )
        checked[short] = value
    for short, value in checked.items():
        parameter = parameters[short]
        parameter.shape = tuple(value.shape)
        checked[short] = value.astype(parameter.dtype, copy=False)
    return checked


class _Source:
    """The values of one :func:`initialize_with` call, read by the first of its parameters initialised."""

    def __init__(self, prefix: str, parameters: Mapping[str, Any], load: Callable[[], Any]) -> None:
        self._prefix = prefix
        self._parameters: Optional[Mapping[str, Any]] = parameters
        self._load: Optional[Callable[[], Any]] = load
        self._values: Optional[dict[str, mx.nd.NDArray]] = None

    def value(self, short: str) -> mx.nd.NDArray:
        if self._values is None:
            assert self._load is not None and self._parameters is not None
            self._values = _checked_values(self._prefix, self._parameters, self._load())
            self._load = self._parameters = None  # called once; the values stay, as initialize_with's would
        return self._values[short]


_checkpoint_follows = 0  # > 0 inside checkpoint_weights_follow()


@contextlib.contextmanager
def checkpoint_weights_follow() -> Iterator[None]:
    """Within, pending ImageNet weights are not read: the parameters start at zero.

    For a detector whose every weight a checkpoint replaces next (a resumed
    run): resuming must not need the ImageNet file, nor the network to fetch it.
    """
    global _checkpoint_follows
    _checkpoint_follows += 1
    try:
        yield
    finally:
        _checkpoint_follows -= 1


class _Pending(mx.init.Initializer):
    """Initialises a parameter with its value of a :class:`_Source`, read on the first call."""

    def __init__(self, source: _Source, short: str) -> None:
        super().__init__()
        self._source = source
        self._short = short

    def _init_weight(self, _: Any, arr: Any) -> None:
        if _checkpoint_follows:
            arr[:] = 0  # the checkpoint's value replaces it
            return
        arr[:] = self._source.value(self._short)

    def dumps(self) -> str:
        return str(mx.init.Zero().dumps())


class _Loaded(mx.init.Initializer):
    """Initialises a parameter with a loaded value.

    Unlike ``mx.init.Constant``, it does not serialise the value into the graph:
    ``Parameter.var()`` writes ``dumps()`` into every symbol, which for
    ``Constant`` is the whole array as JSON text (seconds per hybridization).
    """

    def __init__(self, value: Any) -> None:
        super().__init__()
        self._value = value

    def _init_weight(self, _: Any, arr: Any) -> None:
        arr[:] = self._value

    def dumps(self) -> str:
        # What an exported graph records as the initialiser; the values travel in the parameters file.
        return str(mx.init.Zero().dumps())


def _weights_path(name: str, weights: Optional[PathLike]) -> Optional[Path]:
    """``weights`` as a path, checked to exist, after checking ``name``; ``None`` without ``weights``."""
    file_name = _file_name(name)
    if weights is None:
        return None
    path = Path(os.fspath(weights)).expanduser()
    if not path.is_file():
        raise InputError(
            f"The 'weights' argument must be a .params file of {name}; {path} does not exist. "
            f"MXNet's model store file is {file_name}."
        )
    return path


def _zoo_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """The parameter shapes of the model zoo network ``name`` without its prefix, inferred without data.

    Symbolic shape inference at ImageNet's input size (a few milliseconds, even for ResNet-152);
    empty if it fails, and the shapes are then found at the first forward pass.
    """
    network = vision.get_model(name)
    size = 299 if name.startswith("inception") else 224
    try:
        output = network(mx.sym.var("data"))
        arguments, _, auxiliary = output.infer_shape(data=(1, 3, size, size))
    except (mx.base.MXNetError, ValueError, TypeError):
        return {}
    names = output.list_arguments() + output.list_auxiliary_states()
    prefix = network.prefix
    return {key[len(prefix):]: tuple(shape) for key, shape in zip(names, list(arguments) + list(auxiliary))
            if key.startswith(prefix)}


#: The SHA-1 sums of GluonCV's model store files of its SSDs (``gluoncv.model_zoo.model_store``,
#: GluonCV 0.10.5), downloaded from the same repository as MXNet's (``gluon/models/NAME-HASH.zip``).
GLUONCV_SSD_SHA1: dict[str, str] = {
    "ssd_300_vgg16_atrous_voc": "0e169fbb64efdee6985c3c175ec4298c4bda0298",
    "ssd_300_vgg16_atrous_coco": "b302ad8a8660345c368448141d8acf30b5a3801d",
    "ssd_512_vgg16_atrous_voc": "daf8181b615b480236fcb8474545077891276945",
    "ssd_512_vgg16_atrous_coco": "5c86064290c05eccbdd88475376c71c595c8325c",
    "ssd_512_resnet50_v1_voc": "9c8b225a552614e4284a0f647331bfdc6940eb4a",
    "ssd_512_resnet50_v1_coco": "c48351620d4f0cbc49e4f7a84c8e67ef8fdc6e09",
    "ssd_512_mobilenet1.0_voc": "37c180765a4eb3e67751d6bacac47bb9156f5fff",
    "ssd_512_mobilenet1.0_coco": "da9756faa5b9b4e34dedcf83ee0733d5895796ad",
}


def gluoncv_model_file(name: str, root: Optional[PathLike] = None) -> Path:
    """GluonCV's model store file of the detector ``name`` in ``root``, downloaded and verified if missing.

    The same download as :func:`pretrained_parameters`' (timeouts, size cap, SHA-1 check, the file in
    place only when complete), with the sums of :data:`GLUONCV_SSD_SHA1`.
    """
    return _model_store_file(name, root, GLUONCV_SSD_SHA1, "GluonCV's trained weights",
                             f"import the file itself (detkit import gluoncv /path/to/{{}} --name {name})")


def _file_name(name: str, table: Optional[Mapping[str, str]] = None) -> str:
    """``NAME-HASH.params``, the model store's file name of ``name``."""
    table = model_store._model_sha1 if table is None else table
    if not isinstance(name, str) or name not in table:
        known = ", ".join(sorted(table))
        store = "MXNet's model store" if table is model_store._model_sha1 else "the model store"
        raise InputError(f"The 'name' argument must be a network of {store}; got {name!r} instead. Known: {known}.")
    return f"{name}-{table[name][:8]}.params"


def _model_store_file(name: str, root: Optional[PathLike], table: Optional[Mapping[str, str]] = None,
                      what: str = "The ImageNet weights", instead: str = "pass weights='/path/to/{}'") -> Path:
    """The model store's verified file of ``name`` in ``root``, downloaded if it is missing or differs."""
    table = model_store._model_sha1 if table is None else table
    directory = Path(os.fspath(root)).expanduser() if root is not None else Path(mx.base.data_dir()) / "models"
    file_name = _file_name(name, table)
    target = directory / file_name
    expected = table[name]
    present = target.is_file()
    if present and file_digest(target, "sha1") == expected:
        return target
    repository = os.environ.get("MXNET_GLUON_REPO", model_store.apache_repo_url).rstrip("/") + "/"
    url = f"{repository}gluon/models/{file_name[:-len('.params')]}.zip"
    state = (f"{target} is not the model store's file (its SHA-1 sum differs)" if present
             else f"{file_name} is not in {directory}")
    fix = (f"Without network access, download {url} on another machine, unzip it, and put {file_name} in "
           f"{directory} (the 'root' argument; default $MXNET_HOME/models), or {instead.format(file_name)}.")
    make_dirs(directory)
    try:
        with atomic_path(target) as staged, scratch_folder(directory) as scratch:
            archive = scratch / "download.zip"
            try:
                fetch(url, archive, label=file_name, max_bytes=_MAX_WEIGHTS_BYTES)
            except FetchFailed as failure:
                raise _Failed(f"the download failed: {failure}.") from None
            _unpack(archive, file_name, staged)
            received = file_digest(staged, "sha1")
            if received != expected:
                raise _Failed(
                    f"the downloaded {file_name} has the SHA-1 sum {received}, not the model store's {expected} "
                    f"(nothing was saved). If MXNET_GLUON_REPO is set ({repository}), that repository's file "
                    "differs from MXNet's: unset it or fix its file"
                )
    except _Failed as failure:
        raise DownloadError(f"{what} of {name} are missing: {state}, and {failure} {fix}") from None
    return target


class _Failed(Exception):
    """Why a download failed, as a clause of the final message."""


def _unpack(archive: Path, file_name: str, target: Path) -> None:
    """Copy the member ``file_name`` of the zip ``archive`` to ``target`` (no other member is extracted).

    The member's declared size is checked first (zipfile stops reading at it), so
    that a zip bomb cannot fill the disk before the SHA-1 check refuses it.
    """
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if m.filename.rsplit("/", 1)[-1] == file_name]
            if not members:
                raise _Failed(f"the download holds no {file_name} (it holds {', '.join(zipped.namelist()[:5])}).")
            if members[0].file_size > _MAX_WEIGHTS_BYTES:
                raise _Failed(f"the download's {file_name} would be {members[0].file_size} bytes, more than the "
                              f"{_MAX_WEIGHTS_BYTES} a model store file has at most (nothing was saved).")
            with zipped.open(members[0]) as source, open(target, "wb") as file:
                shutil.copyfileobj(source, file, _CHUNK)
    # zlib.error: a damaged deflate stream; RuntimeError: an encrypted member; NotImplementedError:
    # an unknown compression method.
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, RuntimeError, NotImplementedError) as error:
        raise _Failed(f"the download is not a readable zip file ({error}).") from None
