"""ImageNet weights of model zoo networks: detkit.pretrained_parameters, detkit.initialize_with,
and downloads from a model store served on 127.0.0.1 (detkit.testing.serve_model_store)."""

from __future__ import annotations

import socket

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import model_store, vision

import detkit
from detkit.errors import DownloadError, InputError
from detkit.testing import serve_model_store

NAME = "mobilenet0.25"  # the smallest network of the model store (about 2 MB of parameters)


@pytest.fixture(scope="module")
def saved_network(tmp_path_factory):
    """A randomly initialised mobilenet0.25 and its .params file, standing in for the ImageNet weights."""
    network = vision.get_model(NAME)
    network.initialize(mx.init.Uniform(1.0))
    network(mx.nd.zeros((1, 3, 32, 32)))
    path = tmp_path_factory.mktemp("weights") / "random-mobilenet0.25.params"
    network.save_parameters(str(path))
    return network, path


def _values_of(network) -> dict[str, np.ndarray]:
    return {key[len(network.prefix):]: p.data().asnumpy() for key, p in network.collect_params().items()}


def _closed_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_weights_file_gives_every_parameter_without_the_network_prefix(saved_network) -> None:
    network, path = saved_network
    values = detkit.pretrained_parameters(NAME, weights=path)
    expected = _values_of(network)
    assert sorted(values) == sorted(expected) and "conv0_weight" in values
    assert all(np.array_equal(values[k].asnumpy(), expected[k]) for k in expected)
    assert all(v.context == mx.cpu() for v in values.values())


def test_initialize_with_survives_an_initialize_with_another_initialiser(saved_network) -> None:
    network, path = saved_network
    values = detkit.pretrained_parameters(NAME, weights=path)
    fresh = vision.get_model(NAME)  # another prefix (mobilenet1_, ...), the same names without it
    assert fresh.prefix != network.prefix
    detkit.initialize_with(fresh, values)
    fresh.initialize(mx.init.Xavier(), ctx=mx.cpu())
    images = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    np.testing.assert_array_equal(fresh(images).asnumpy(), network(images).asnumpy())
    # The initialiser does not write the values into the graph (Constant would, as JSON text).
    fresh.hybridize()
    assert len(fresh(images).asnumpy()) == 2


def test_initialize_with_sets_unknown_shapes_and_takes_numpy_arrays() -> None:
    dense = nn.Dense(3, prefix="fc_")  # in_units unknown: (3, 0)
    detkit.initialize_with(dense, {"weight": np.arange(6, dtype="float32").reshape(3, 2), "bias": np.ones(3)})
    assert dense.weight.shape == (3, 2)
    dense.initialize()
    np.testing.assert_array_equal(dense(mx.nd.array([[1, 0]])).asnumpy(), [[1, 3, 5]])


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"weight": np.zeros((3, 2))}, "There is no value for the parameter 'bias' of 'fc_'"),
        ({"weight": np.zeros((4, 2)), "bias": np.zeros(3)},
         "The value for the parameter 'weight' of 'fc_' has the shape (4, 2); the parameter's is (3, 0)"),
        ({"weight": np.zeros((3, 2, 1)), "bias": np.zeros(3)}, "has the shape (3, 2, 1)"),
    ],
)
def test_initialize_with_refuses_missing_and_misshapen_values(values, fragment) -> None:
    dense = nn.Dense(3, prefix="fc_")
    with pytest.raises(InputError) as caught:
        detkit.initialize_with(dense, values)
    assert fragment in str(caught.value)
    assert dense.weight.init is None  # nothing was set


def test_initialize_with_refuses_a_block_made_of_other_networks_parts() -> None:
    body = nn.HybridSequential(prefix="body_")
    body.add(nn.Dense(2, in_units=2, prefix="other_"))
    with pytest.raises(InputError, match="The parameter other_weight does not start with the prefix 'body_'"):
        detkit.initialize_with(body, {"weight": np.zeros((2, 2)), "bias": np.zeros(2)})


def test_bad_names_and_files_raise_input_errors(saved_network, tmp_path) -> None:
    _, path = saved_network
    with pytest.raises(InputError, match="must be a network of MXNet's model store; got 'mobilenet9' instead"):
        detkit.pretrained_parameters("mobilenet9")
    with pytest.raises(InputError, match=r"must be a \.params file of mobilenet0\.25; .*nowhere\.params does not exist"):
        detkit.pretrained_parameters(NAME, weights=tmp_path / "nowhere.params")
    with pytest.raises(InputError, match=f"The weights file {path} does not hold the parameters of mobilenet0.5"):
        detkit.pretrained_parameters("mobilenet0.5", weights=path)
    garbage = tmp_path / "garbage.params"
    garbage.write_bytes(b"not a params file")
    with pytest.raises(InputError, match="does not hold the parameters of mobilenet0.25"):
        detkit.pretrained_parameters(NAME, weights=garbage)


def test_the_model_store_file_is_downloaded_once_and_verified(saved_network, tmp_path) -> None:
    network, path = saved_network
    real_sha1 = model_store._model_sha1[NAME]
    with serve_model_store({NAME: path}) as store:
        file_name = store.file_names[NAME]
        values = detkit.pretrained_parameters(NAME, root=tmp_path)
        assert store.requests == [f"/gluon/models/{file_name[:-len('.params')]}.zip"]
        assert sorted(p.name for p in tmp_path.iterdir()) == [file_name]  # no zip, no staged file left
        assert (tmp_path / file_name).read_bytes() == path.read_bytes()
        detkit.pretrained_parameters(NAME, root=tmp_path)  # verified in place: no second download
        assert len(store.requests) == 1
    assert model_store._model_sha1[NAME] == real_sha1  # the server restored the table
    expected = _values_of(network)
    assert all(np.array_equal(values[k].asnumpy(), expected[k]) for k in expected)


def test_a_served_file_with_another_sha1_is_refused_and_not_kept(saved_network, tmp_path) -> None:
    _, path = saved_network
    with serve_model_store({NAME: path}, accept=False) as store:
        file_name = store.file_names[NAME]  # the real name, mobilenet0.25-9f83e440.params
        with pytest.raises(DownloadError) as caught:
            detkit.pretrained_parameters(NAME, root=tmp_path)
    message = str(caught.value)
    assert file_name == f"{NAME}-{model_store.short_hash(NAME)}.params"
    assert f"the downloaded {file_name} has the SHA-1 sum" in message
    assert f"not the model store's {model_store._model_sha1[NAME]} (nothing was saved)" in message
    assert f"If MXNET_GLUON_REPO is set ({store.url})" in message
    assert f"put {file_name} in {tmp_path}" in message and f"weights='/path/to/{file_name}'" in message
    assert list(tmp_path.iterdir()) == []


def test_offline_the_error_names_the_url_and_where_to_put_the_file(tmp_path, monkeypatch) -> None:
    repository = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MXNET_GLUON_REPO", repository)
    file_name = f"{NAME}-{model_store.short_hash(NAME)}.params"
    with pytest.raises(DownloadError) as caught:
        detkit.pretrained_parameters(NAME, root=tmp_path / "models")
    message = str(caught.value)
    assert isinstance(caught.value, OSError)
    assert message.startswith(f"The ImageNet weights of {NAME} are missing: {file_name} is not in {tmp_path / 'models'}")
    assert "cannot reach it" in message
    assert f"download {repository}/gluon/models/{file_name[:-len('.params')]}.zip on another machine" in message
    assert f"put {file_name} in {tmp_path / 'models'} (the 'root' argument" in message
    assert list((tmp_path / "models").iterdir()) == []


def test_a_damaged_file_in_the_store_is_named_when_it_cannot_be_replaced(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{_closed_port()}/")
    damaged = tmp_path / f"{NAME}-{model_store.short_hash(NAME)}.params"
    damaged.write_bytes(b"half a file")
    with pytest.raises(DownloadError, match=f"{damaged} is not the model store's file \\(its SHA-1 sum differs\\)"):
        detkit.pretrained_parameters(NAME, root=tmp_path)
    assert damaged.read_bytes() == b"half a file"  # left as it was


def test_a_missing_file_on_the_server_is_an_http_error(saved_network, tmp_path) -> None:
    _, path = saved_network
    with serve_model_store({"mobilenet0.5": path}):  # serves another network only
        with pytest.raises(DownloadError, match="the server answered HTTP 404"):
            detkit.pretrained_parameters(NAME, root=tmp_path)


# -- lazy loading ------------------------------------------------------------------------------


def test_initialize_with_a_function_calls_it_once_when_the_parameters_are_initialised(saved_network) -> None:
    network, path = saved_network
    calls = []

    def load():
        calls.append(1)
        return detkit.pretrained_parameters(NAME, weights=path)

    fresh = vision.get_model(NAME)
    detkit.initialize_pretrained(fresh, NAME, weights=path)  # shapes known: initialize() reads the values
    detkit.initialize_with(fresh, load)
    assert calls == []
    fresh.initialize(mx.init.Xavier(), ctx=mx.cpu())
    assert calls == [1]  # once for every parameter, before any forward pass
    images = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    np.testing.assert_array_equal(fresh(images).asnumpy(), network(images).asnumpy())
    fresh.initialize(force_reinit=True)  # the values are kept: not read again
    assert calls == [1]
    np.testing.assert_array_equal(fresh(images).asnumpy(), network(images).asnumpy())


def test_a_parameter_of_unknown_shape_takes_its_lazy_value_at_the_first_forward() -> None:
    dense = nn.Dense(3, prefix="fc_")  # in_units unknown: the weight is deferred until the first forward
    calls = []
    detkit.initialize_with(dense, lambda: calls.append(1) or {"weight": np.ones((3, 2)), "bias": np.arange(3)})
    dense.initialize()
    assert calls == [1]  # the bias (3,) is initialised now, and reads the values
    with pytest.raises(mx.gluon.parameter.DeferredInitializationError):
        dense.weight.data()
    np.testing.assert_array_equal(dense(mx.nd.array([[1, 2]])).asnumpy(), [[3, 4, 5]])
    assert calls == [1]


def test_what_the_function_raises_reaches_initialize_and_bad_values_are_refused_then() -> None:
    dense = nn.Dense(3, in_units=2, prefix="fc_")

    def offline():
        raise DownloadError("The ImageNet weights of x are missing.")

    detkit.initialize_with(dense, offline)
    with pytest.raises(DownloadError, match="The ImageNet weights of x are missing"):
        dense.initialize()
    other = nn.Dense(3, in_units=2, prefix="fc_")
    detkit.initialize_with(other, lambda: {"weight": np.zeros((4, 2)), "bias": np.zeros(3)})
    with pytest.raises(InputError, match=r"'weight' of 'fc_' has the shape \(4, 2\); the parameter's is \(3, 2\)"):
        other.initialize()


def test_initialize_pretrained_checks_its_arguments_now_and_reads_at_initialize(saved_network, tmp_path) -> None:
    network, path = saved_network
    with pytest.raises(InputError, match="must be a network of MXNet's model store; got 'mobilenet9' instead"):
        detkit.initialize_pretrained(vision.get_model(NAME), "mobilenet9")
    with pytest.raises(InputError, match=r"must be a \.params file of mobilenet0\.25; .*nowhere\.params does not exist"):
        detkit.initialize_pretrained(vision.get_model(NAME), NAME, weights=tmp_path / "nowhere.params")
    fresh = vision.get_model(NAME)
    with serve_model_store({NAME: path}) as store:
        detkit.initialize_pretrained(fresh, NAME, root=tmp_path / "models")
        assert store.requests == [] and not (tmp_path / "models").exists()
        assert all(0 not in p.shape for p in fresh.collect_params().values())  # inferred without the file
        fresh.initialize(mx.init.Xavier())
        assert len(store.requests) == 1
    images = mx.nd.random.uniform(shape=(1, 3, 32, 32))
    np.testing.assert_array_equal(fresh(images).asnumpy(), network(images).asnumpy())


def test_initialize_pretrained_offline_fails_at_initialize_with_the_download_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MXNET_GLUON_REPO", f"http://127.0.0.1:{_closed_port()}/")
    fresh = vision.get_model(NAME)
    detkit.initialize_pretrained(fresh, NAME, root=tmp_path)  # nothing happens yet
    with pytest.raises(DownloadError, match=f"{NAME}-.*params is not in {tmp_path}"):
        fresh.initialize()
    assert list(tmp_path.iterdir()) == []


def test_initialize_pretrained_converts_the_values(saved_network) -> None:
    _, path = saved_network
    head = nn.Dense(2, in_units=8, prefix="head_")
    detkit.initialize_pretrained(head, NAME, weights=path, convert=lambda values: {
        "weight": values["conv0_weight"].reshape((8, -1))[:, :8][:2] * 0 + 1, "bias": mx.nd.zeros(2)})
    head.initialize()
    np.testing.assert_array_equal(head.weight.data().asnumpy(), np.ones((2, 8)))


# -- the ImageNet input ----------------------------------------------------------------------------


def test_imagenet_input_maps_detkit_input_to_the_imagenet_normalisation() -> None:
    rgb = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 5, 7)).astype("float32")
    mean = np.array([0.485, 0.456, 0.406], "float32").reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], "float32").reshape(1, 3, 1, 1)
    detkit_input = mx.nd.array(rgb - np.array(detkit.data.RGB_MEAN, "float32").reshape(1, 3, 1, 1))
    expected = (rgb / 255 - mean) / std
    block = detkit.ImageNetInput()
    np.testing.assert_allclose(block(detkit_input).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    block.hybridize(static_alloc=True)
    np.testing.assert_allclose(block(detkit_input).asnumpy(), expected, rtol=1e-5, atol=1e-5)
    symbol = block(mx.sym.var("data"))
    assert symbol.list_arguments() == ["data"] and symbol.list_auxiliary_states() == []


def test_imagenet_input_has_nothing_to_train_and_runs_in_half_precision() -> None:
    block = detkit.ImageNetInput()
    assert list(block.collect_params()) == []
    block.initialize()  # nothing to do
    block.cast("float16")
    output = block(mx.nd.zeros((1, 3, 2, 2), dtype="float16"))
    assert output.dtype == np.float16
    expected = (np.array(detkit.data.RGB_MEAN) / 255 - np.array(block.MEAN)) / np.array(block.STD)
    np.testing.assert_allclose(output.asnumpy()[0, :, 0, 0], expected, rtol=1e-2)


def test_a_download_larger_than_any_model_store_file_is_refused_unwritten(saved_network, tmp_path,
                                                                          monkeypatch) -> None:
    from detkit import _pretrained

    _, path = saved_network
    monkeypatch.setattr(_pretrained, "_MAX_WEIGHTS_BYTES", 1000)  # the served file is about 2 MB
    with serve_model_store({NAME: path}), pytest.raises(DownloadError, match="more than the 1000 expected at most"):
        detkit.pretrained_parameters(NAME, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_zip_member_declared_larger_than_the_cap_is_not_extracted(tmp_path, monkeypatch) -> None:
    import zipfile

    from detkit import _pretrained

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("w.params", b"\0" * 100_000)  # 100 kB that compress to about 100 bytes
    monkeypatch.setattr(_pretrained, "_MAX_WEIGHTS_BYTES", 10_000)
    with pytest.raises(_pretrained._Failed, match="would be 100000 bytes, more than the 10000"):
        _pretrained._unpack(archive, "w.params", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_damaged_zip_is_a_download_failure_not_a_traceback(tmp_path) -> None:
    import zipfile

    from detkit import _pretrained

    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("w.params", bytes(range(256)) * 400)
    data = bytearray(archive.read_bytes())
    start = data.index(b"w.params") + len("w.params")  # the deflate stream follows the local header's name
    data[start + 10:start + 40] = b"\xff" * 30
    archive.write_bytes(bytes(data))
    with pytest.raises(_pretrained._Failed, match="the download is not a readable zip file"):
        _pretrained._unpack(archive, "w.params", tmp_path / "out")


def test_serve_model_store_changes_nothing_global_when_a_file_is_missing(saved_network, tmp_path) -> None:
    _, path = saved_network
    table = dict(model_store._model_sha1)
    with pytest.raises(InputError, match="does not exist"):
        with serve_model_store({NAME: path, "mobilenet0.5": tmp_path / "missing.params"}):
            pass
    assert model_store._model_sha1 == table
