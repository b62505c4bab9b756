"""fit(), evaluate(), predict() on a tiny synthetic set: small images, few iterations."""

from __future__ import annotations

import json
import math
import warnings

import mxnet as mx
import numpy as np
import pytest

import detkit
import detkit._engine._checkpoints
from detkit import SSDDetector
from detkit.errors import CheckpointError, InputError, NonFiniteLossError

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("pikachu")
    return detkit.data.synthetic_pikachu(root, num_train=32, num_val=8, image_size=SIZE, seed=3, progress=False)


def _detector(**kwargs) -> SSDDetector:
    mx.random.seed(11)  # the same initial weights every time
    return SSDDetector(classes=["pikachu"], data_shape=SIZE, ctx=mx.cpu(), **kwargs)


def _weights(detector: SSDDetector) -> dict[str, np.ndarray]:
    # Keyed by position: parameter names carry a per-instance prefix (ssdnetwork0_, ssdnetwork1_, ...).
    return {f"{i}:{p.shape}": p.data().asnumpy() for i, p in enumerate(detector.network.collect_params().values())}


def test_fit_lowers_the_loss_and_records_the_documented_fields(tiny) -> None:
    train, val = tiny
    detector = _detector()
    history = detkit.fit(detector, train, val, epochs=3, batch_size=8, seed=0, quiet=True,
                         optimizer_params={"learning_rate": 0.05})
    assert len(history) == 3
    for field in ("epoch", "loss", "focal", "smooth_l1", "class_accuracy", "box_mae", "learning_rate",
                  "seconds", "images_per_second", "map_50", "map_50_voc07", "map_50_95"):
        assert field in history.last, field
    assert history["epoch"] == [1, 2, 3]
    assert history["loss"][-1] < history["loss"][0]
    assert all(math.isfinite(v) for v in history["loss"])
    assert 0 <= history.last["class_accuracy"] <= 1 and 0 <= history.last["map_50"] <= 1


def test_the_fused_training_step_trains_exactly_as_the_plain_one(tiny, monkeypatch) -> None:
    from detkit._blocks import can_fuse_batch_norm_relu
    from detkit._engine import _fit

    assert not can_fuse_batch_norm_relu([mx.cpu(), mx.gpu(0)])  # the fused operator is CPU-only
    if not can_fuse_batch_norm_relu([mx.cpu()]):
        pytest.skip("this MXNet runs without MKL-DNN: fit never fuses batch norm and ReLU")
    graphs = []

    class Recorded(_fit.TrainingGraph):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            graphs.append(self)

    monkeypatch.setattr(_fit, "TrainingGraph", Recorded)
    train, _ = tiny
    runs = []
    for fuse in (True, False):
        monkeypatch.setattr(_fit, "can_fuse_batch_norm_relu", lambda contexts, fuse=fuse: fuse)
        detector = _detector()
        history = detkit.fit(detector, train, epochs=2, batch_size=8, seed=0, quiet=True)
        runs.append((history["loss"], _weights(detector)))
        step = mx.sym.Group(list(graphs[-1](mx.sym.var("images"), mx.sym.var("labels"))))  # the step's graph
        assert step.tojson().count("_contrib_BatchNormWithReLU") == (12 if fuse else 0)  # 6 blocks, 2 norms each
        inference = mx.sym.Group(list(detector.network(mx.sym.var("data"))))
        assert "BatchNormWithReLU" not in inference.tojson()  # after fit, graphs of the network stay portable
    assert runs[0][0] == runs[1][0]  # the same numbers, bit for bit
    for key, expected in runs[1][1].items():
        np.testing.assert_array_equal(runs[0][1][key], expected)


def test_progress_and_summary_lines_unless_quiet(tiny, capsys) -> None:
    train, _ = tiny
    detkit.fit(_detector(), train, epochs=1, batch_size=16, seed=0)
    out = capsys.readouterr().out
    assert "epoch   1/1  loss" in out and "class acc" in out and "img/s" in out
    detkit.fit(_detector(), train, epochs=1, batch_size=16, seed=0, quiet=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "epoch" not in captured.err


def test_resume_gives_the_weights_of_an_uninterrupted_run(tiny, tmp_path) -> None:
    train, _ = tiny
    straight = _detector()
    detkit.fit(straight, train, epochs=2, batch_size=8, seed=5, quiet=True, checkpoint_dir=tmp_path / "a",
               optimizer_params={"learning_rate": 0.05, "momentum": 0.9})
    first = _detector()
    detkit.fit(first, train, epochs=1, batch_size=8, seed=5, quiet=True, checkpoint_dir=tmp_path / "b",
               optimizer_params={"learning_rate": 0.05, "momentum": 0.9})
    resumed = _detector()
    history = detkit.fit(resumed, train, epochs=2, batch_size=8, quiet=True, checkpoint_dir=tmp_path / "b",
                         resume=True, optimizer_params={"learning_rate": 0.05, "momentum": 0.9})
    assert history["epoch"] == [1, 2]
    expected, got = _weights(straight), _weights(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # And the resumed run really trained: its weights moved from the one-epoch checkpoint.
    assert any(not np.allclose(_weights(first)[n], got[n]) for n in got)


def test_checkpoints_keep_last_and_best_and_load_as_detectors(tiny, tmp_path) -> None:
    train, val = tiny
    history = detkit.fit(_detector(), train, val, epochs=3, batch_size=16, seed=0, quiet=True,
                         checkpoint_dir=tmp_path)
    last = json.loads((tmp_path / "last.json").read_text())
    assert last["checkpoint"] == "epoch-0003"
    scores = history["map_50"]
    best_epoch = max(range(3), key=lambda e: (scores[e], -e))  # the first of the highest
    best = json.loads((tmp_path / "best.json").read_text())["checkpoint"]
    assert best == f"epoch-{best_epoch + 1:04d}"
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == sorted({best, "epoch-0003"})
    loaded = SSDDetector.load(tmp_path / last["checkpoint"], ctx=mx.cpu())
    assert loaded.data_shape == (SIZE, SIZE)
    assert not list(tmp_path.glob(".*partial"))


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_loadable(tiny, tmp_path, monkeypatch) -> None:
    train, _ = tiny
    detector = _detector()
    detkit.fit(detector, train, epochs=1, batch_size=16, seed=0, quiet=True, checkpoint_dir=tmp_path)
    before = _weights(SSDDetector.load(tmp_path / "epoch-0001", ctx=mx.cpu()))

    def crash(trainer, folder):
        (tmp_path / "crashed").write_text("")
        raise KeyboardInterrupt  # the power goes out while the trainer states are written

    monkeypatch.setattr(detkit._engine._checkpoints, "save_optimizer_state", crash)
    with pytest.raises(KeyboardInterrupt):
        detkit.fit(detector, train, epochs=2, batch_size=16, quiet=True, checkpoint_dir=tmp_path, resume=True)
    assert (tmp_path / "crashed").exists()
    assert json.loads((tmp_path / "last.json").read_text())["checkpoint"] == "epoch-0001"
    after = _weights(SSDDetector.load(tmp_path / "epoch-0001", ctx=mx.cpu()))
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    assert not (tmp_path / "epoch-0002").exists()


class _PoisonAfterFirstEpoch(detkit.Callback):
    """Makes a class head's weights NaN after the first epoch, as a diverging run would."""

    def on_epoch_end(self, epoch, record, detector):
        if epoch == 0:
            head = detector.network.class_heads[0].weight
            head.set_data(head.data() * float("nan"))


def test_a_non_finite_loss_stops_training_and_names_epoch_and_batch(tiny, tmp_path) -> None:
    train, _ = tiny
    with pytest.raises(NonFiniteLossError) as caught:
        detkit.fit(_detector(), train, epochs=3, batch_size=8, seed=0, quiet=True, checkpoint_dir=tmp_path,
                   callbacks=[_PoisonAfterFirstEpoch()])
    error = caught.value
    assert (error.epoch, error.batch) == (1, 0)
    assert "epoch 2, batch 1" in str(error) and "nan" in str(error)
    assert json.loads((tmp_path / "last.json").read_text())["checkpoint"] == "epoch-0001"
    weights = _weights(SSDDetector.load(tmp_path / "epoch-0001", ctx=mx.cpu()))
    assert weights and all(np.isfinite(w).all() for w in weights.values())


def test_a_diverging_run_stops_with_a_non_finite_loss(tiny) -> None:
    train, _ = tiny
    # Caught by the loss of a batch, or by the weights at the end of the epoch when the
    # epoch's last updates are what overflow (which one depends on float rounding).
    with pytest.raises(NonFiniteLossError, match=r"epoch 1\b"):
        detkit.fit(_detector(), train, epochs=5, batch_size=8, seed=0, quiet=True,
                   optimizer_params={"learning_rate": 1e12})


def test_fit_refuses_to_overwrite_an_earlier_run_and_resumes_only_the_same_settings(tiny, tmp_path) -> None:
    train, _ = tiny
    detkit.fit(_detector(), train, epochs=1, batch_size=16, seed=0, quiet=True, checkpoint_dir=tmp_path,
               lr_schedule="cosine")
    with pytest.raises(CheckpointError, match="earlier run.*resume=True"):
        detkit.fit(_detector(), train, epochs=1, batch_size=16, seed=0, quiet=True, checkpoint_dir=tmp_path)
    for changed, key in (({"batch_size": 8}, "batch_size"), ({"epochs": 3}, "epochs"),
                         ({"optimizer": "nag"}, "optimizer")):
        arguments = {"epochs": 2, "batch_size": 16, "lr_schedule": "cosine", **changed}
        with pytest.raises(CheckpointError, match=f"trained with {key}="):
            detkit.fit(_detector(), train, quiet=True, checkpoint_dir=tmp_path, resume=True, **arguments)
    assert (tmp_path / "epoch-0001").is_dir()


def test_resume_without_a_checkpoint_starts_afresh_and_says_so(tiny, tmp_path, capsys) -> None:
    train, _ = tiny
    history = detkit.fit(_detector(), train, epochs=1, batch_size=16, seed=0, checkpoint_dir=tmp_path, resume=True)
    assert len(history) == 1
    assert "no checkpoint in" in capsys.readouterr().out


def test_fit_checks_the_data_classes_before_training(tiny) -> None:
    train, val = tiny
    detector = SSDDetector(classes=["cat", "dog"], data_shape=SIZE, ctx=mx.cpu())
    with pytest.raises(InputError, match=r"'train_data' classes \['pikachu'\] differ"):
        detkit.fit(detector, train, epochs=1, quiet=True)


def test_fit_on_two_devices_and_on_devices_without_the_detectors_context(tiny, tmp_path) -> None:
    train, val = tiny
    # Two CPU contexts stand for two GPUs: the batch is split, gradients summed.
    detector = _detector()
    history = detkit.fit(detector, train, val, epochs=1, batch_size=8, seed=0, quiet=True,
                         devices=[mx.cpu(0), mx.cpu(1)], checkpoint_dir=tmp_path / "two")
    assert math.isfinite(history.last["loss"]) and "map_50" in history.last
    assert detector.ctx == mx.cpu(0)
    detector.detect(mx.nd.zeros((1, 3, SIZE, SIZE)))  # the weights are back where the detector lives
    # Training on a device the detector does not live on, with evaluation and checkpoints.
    elsewhere = _detector()
    detkit.fit(elsewhere, train, val, epochs=1, batch_size=8, seed=0, quiet=True, devices=[mx.cpu(1)],
               checkpoint_dir=tmp_path / "one")
    assert elsewhere.ctx == mx.cpu(0)
    assert SSDDetector.load(tmp_path / "one" / "epoch-0001", ctx=mx.cpu()).classes == ["pikachu"]


def test_fit_rejects_bad_arguments(tiny) -> None:
    train, _ = tiny
    detector = _detector()
    with pytest.raises(InputError, match="'epochs'"):
        detkit.fit(detector, train, epochs=0)
    with pytest.raises(InputError, match="'train_data'"):
        detkit.fit(detector, [1, 2], epochs=1)
    with pytest.raises(InputError, match="'resume'.*checkpoint_dir"):
        detkit.fit(detector, train, epochs=1, resume=True)
    with pytest.raises(InputError, match="'lr_schedule'"):
        detkit.fit(detector, train, epochs=1, lr_schedule="exponential", quiet=True)
    with pytest.raises(InputError, match="'warmup_epochs'.*shorter than the training"):
        detkit.fit(detector, train, epochs=1, lr_schedule="cosine", warmup_epochs=1, quiet=True)
    with pytest.raises(InputError, match="fewer than one batch"):
        detkit.fit(detector, train, epochs=1, batch_size=64, quiet=True)
    with pytest.raises(InputError, match="'devices'"):
        detkit.fit(detector, train, epochs=1, devices="tpu")
    with pytest.raises(InputError, match="'ema_epochs'"):
        detkit.fit(detector, train, epochs=1, ema_epochs=-1.0)
    with pytest.raises(InputError, match="'optimizer' argument.*'adamm'"):
        detkit.fit(detector, train, epochs=1, optimizer="adamm")
    with pytest.raises(InputError, match="does not take the setting.*'momentun'"):
        detkit.fit(detector, train, epochs=1, optimizer_params={"momentun": 0.9})


def test_resume_refuses_a_checkpoint_of_another_detector(tiny, tmp_path) -> None:
    train, _ = tiny
    detkit.fit(_detector(), train, epochs=1, batch_size=16, seed=0, quiet=True, checkpoint_dir=tmp_path)
    other = _detector(loss=("focal_smooth_l1", {"gamma": 1.0}))
    with pytest.raises(CheckpointError, match=r"another detector \(components differs\)"):
        detkit.fit(other, train, epochs=2, batch_size=16, quiet=True, checkpoint_dir=tmp_path, resume=True)


def test_cosine_schedule_decays_the_learning_rate(tiny) -> None:
    train, _ = tiny
    history = detkit.fit(_detector(), train, epochs=2, batch_size=16, seed=0, quiet=True,
                         lr_schedule="cosine", warmup_epochs=0.5)
    assert history["learning_rate"][1] < history["learning_rate"][0] < 0.1


def test_callbacks_are_called_and_can_stop_training(tiny) -> None:
    train, _ = tiny
    calls = []

    class Stopper(detkit.Callback):
        def on_train_begin(self, detector, history):
            calls.append("begin")

        def on_epoch_end(self, epoch, record, detector):
            calls.append(("epoch", epoch, round(record["loss"], 6) > 0))
            return epoch == 1

        def on_train_end(self, history):
            calls.append(("end", len(history)))

    detkit.fit(_detector(), train, epochs=5, batch_size=16, seed=0, quiet=True, callbacks=[Stopper()])
    assert calls == ["begin", ("epoch", 0, True), ("epoch", 1, True), ("end", 2)]


def test_evaluate_scores_perfect_detections_one_and_drops_the_padding(tiny, monkeypatch) -> None:
    _, val = tiny
    detector = _detector()
    truth = {}  # preprocessed image bytes -> its ground truth, to answer detect() with
    for batch in val.loader(1, SIZE, train=False):
        truth[batch.data.asnumpy().tobytes()] = batch.label.asnumpy()[0]

    def perfect(images):
        rows = np.full((images.shape[0], 4, 6), -1.0, np.float32)
        for i, image in enumerate(images.asnumpy()):
            label = truth[image[None].tobytes()]
            objects = label[label[:, 0] >= 0]
            rows[i, : len(objects), 0] = objects[:, 0]
            rows[i, : len(objects), 1] = 0.9
            rows[i, : len(objects), 2:] = objects[:, 1:]
        return mx.nd.array(rows)

    monkeypatch.setattr(detector, "detect", perfect)
    scores = detkit.evaluate(detector, val, batch_size=3)  # 8 images: the last batch has one padding image
    assert scores["map_50"] == 1.0 and scores["map_50_voc07"] == 1.0 and scores["map_50_95"] == 1.0
    assert scores["num_images"] == 8


def test_evaluate_reports_voc_and_coco_map(tiny) -> None:
    _, val = tiny
    scores = detkit.evaluate(_detector(), val, batch_size=3)  # 8 images: the last batch is padded
    assert scores["num_images"] == len(val) == 8
    assert set(scores["per_class"]) == {"pikachu"}
    assert scores["per_class"]["pikachu"]["num_ground_truth"] == sum(len(val.objects(i)) for i in range(len(val)))
    for key in ("map_50", "map_50_voc07", "map_50_95"):
        assert 0 <= scores[key] <= 1


def test_predict_returns_pixel_boxes_for_every_input_type(tiny, tmp_path) -> None:
    from PIL import Image

    _, val = tiny
    detector = _detector()
    image = np.concatenate([val.image(0), val.image(1)], axis=1)  # 64 x 128: not square
    path = tmp_path / "two.png"
    Image.fromarray(image).save(path)
    expected = detector.predict(image, threshold=0.0)
    assert expected, "an untrained detector still scores some boxes above 0"
    for given in (str(path), path, image, mx.nd.array(image, dtype="uint8"), image.astype("float32")):
        got = detector.predict(given, threshold=0.0)
        assert [d.class_name for d in got] == [d.class_name for d in expected]
        np.testing.assert_allclose([d.box for d in got], [d.box for d in expected], rtol=1e-4, atol=1e-3)
    # Boxes are the normalised detections scaled by the original width and height.
    rows = detector.detect(detkit.data.preprocess(image, detector.data_shape)).asnumpy()[0]
    top = rows[rows[:, 0] >= 0][np.argmax(rows[rows[:, 0] >= 0][:, 1])]
    np.testing.assert_allclose(expected[0].box, top[2:6] * [128, 64, 128, 64], rtol=1e-4)
    assert expected[0].score == pytest.approx(top[1]) and expected[0].score >= expected[-1].score
    several = detector.predict([image, str(path)], threshold=0.5)
    assert len(several) == 2 and all(d.score >= 0.5 for ds in several for d in ds)


def test_predict_takes_batches_grey_rgba_and_rotated_files(tiny, tmp_path) -> None:
    from PIL import Image

    _, val = tiny
    detector = _detector()
    rgb = val.image(0)
    expected = detector.predict(rgb, threshold=0.0)
    batch = np.stack([rgb, val.image(1)])  # (2, H, W, 3)
    assert [d.box for d in detector.predict(batch, threshold=0.0)[0]] == [d.box for d in expected]
    assert len(detector.predict(mx.nd.array(batch, dtype="uint8"), threshold=0.0)) == 2
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert [d.box for d in detector.predict(rgba, threshold=0.0)] == [d.box for d in expected]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert [d.box for d in detector.predict(tmp_path / "rgba.png", threshold=0.0)] == [d.box for d in expected]
    grey = rgb.mean(axis=2).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    from_file = detector.predict(tmp_path / "grey.png", threshold=0.0)
    assert [d.box for d in from_file] == [d.box for d in detector.predict(grey[:, :, None], threshold=0.0)]
    # A photo stored sideways with an EXIF orientation is read upright.
    wide = np.concatenate([rgb, val.image(1)], axis=1)  # 64 x 128
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise: the stored pixels are the upright image turned left
    Image.fromarray(np.rot90(wide)).save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
    assert detkit.load_image(tmp_path / "turned.jpg").shape == wide.shape


def test_predict_rejects_bad_images(tiny) -> None:
    detector = _detector()
    with pytest.raises(InputError, match="does not exist"):
        detector.predict("no/such/image.jpg")
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        detector.predict(np.zeros((64, 64, 5), dtype="uint8"))
    with pytest.raises(InputError, match="channels last"):
        detector.predict(np.zeros((2, 3, 64, 64), dtype="float32"))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        detector.predict(np.full((64, 64, 3), 0.5, dtype="float32"))
    with pytest.raises(InputError, match="'batch_size'"):
        detector.predict(np.zeros((64, 64, 3), dtype="uint8"), batch_size=0)
    with pytest.raises(InputError, match="'threshold'"):
        detector.predict(np.zeros((64, 64, 3), dtype="uint8"), threshold=2)


def test_draw_detections_and_history_plot_write_pngs(tiny, tmp_path) -> None:
    _, val = tiny
    detector = _detector()
    detections = detector.predict(val.image(0), threshold=0.0)[:3]
    out = detkit.draw_detections(val.image(0), detections, tmp_path / "dets.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = detkit.History([{"epoch": 1, "loss": 1.0, "map_50": 0.2}, {"epoch": 2, "loss": 0.5, "map_50": 0.4}])
    history.plot(tmp_path / "history.png")
    assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"


def test_val_every_validates_every_nth_and_the_last_epoch_and_picks_the_best_among_them(tiny, tmp_path) -> None:
    train, val = tiny
    history = detkit.fit(_detector(), train, val, epochs=4, batch_size=16, seed=0, quiet=True, val_every=3,
                         checkpoint_dir=tmp_path)
    assert history["validated"] == [False, False, True, True]
    assert [math.isnan(v) for v in history["map_50"]] == [True, True, False, False]
    scores = history["map_50"]
    best_epoch = 3 if scores[2] >= scores[3] else 4
    assert json.loads((tmp_path / "best.json").read_text()) == {"checkpoint": f"epoch-{best_epoch:04d}",
                                                                 "epoch": best_epoch}
    # The pointers count epochs as the folder names do.
    assert json.loads((tmp_path / "last.json").read_text()) == {"checkpoint": "epoch-0004", "epoch": 4}


def test_clip_gradient_norm_bounds_every_step(tiny) -> None:
    train, _ = tiny
    moved = {}
    for clip in (None, 1e-3):
        detector = _detector()
        detector._materialize()
        trained = [p for p in detector.network.collect_params().values() if p.grad_req != "null"]
        before = [p.data().asnumpy() for p in trained]  # not BatchNorm's running statistics
        # Plain SGD without weight decay: a step moves the weights by learning_rate x the (clipped) gradient.
        detkit.fit(detector, train, epochs=1, batch_size=16, seed=0, quiet=True, clip_gradient_norm=clip,
                   optimizer_params={"learning_rate": 0.01, "wd": 0.0})
        moved[clip] = math.sqrt(sum(float(((p.data().asnumpy() - b) ** 2).sum()) for p, b in zip(trained, before)))
    steps = 2  # 32 images, batch 16
    assert moved[1e-3] <= steps * 0.01 * 1e-3 * 1.01
    assert moved[None] > 10 * moved[1e-3]  # unclipped, the gradients are far larger


def test_the_history_records_clipping_and_a_limit_that_clips_every_step_is_named(tiny) -> None:
    from detkit.errors import PerformanceWarning

    train, _ = tiny
    # A limit far below any gradient's norm: every step is clipped, which the warning names with a fix.
    with pytest.warns(PerformanceWarning, match=r"shortened 100% of epoch 2's steps.*Raise clip_gradient_norm to \d"):
        tight = detkit.fit(_detector(), train, epochs=2, batch_size=16, seed=0, quiet=True, clip_gradient_norm=1e-6)
    assert tight["clipped"] == [1.0, 1.0]
    assert all(norm > 1e-6 for norm in tight["grad_norm"])
    # A limit no gradient reaches: nothing clipped, no warning, the same norms (clipping does not change them).
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        loose = detkit.fit(_detector(), train, epochs=2, batch_size=16, seed=0, quiet=True, clip_gradient_norm=1e9)
    assert loose["clipped"] == [0.0, 0.0]
    assert all(math.isfinite(norm) and norm > 0 for norm in loose["grad_norm"])
    # A limit a few times below the norm: most steps clipped, which the epoch line shows, but no warning
    # (a recipe may clip so on purpose; fast does).
    moderate = tight["grad_norm"][0] / 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        some = detkit.fit(_detector(), train, epochs=2, batch_size=16, seed=0, quiet=True, clip_gradient_norm=moderate)
    assert some["clipped"][0] > 0
    # Without clipping the record has neither key.
    assert "grad_norm" not in detkit.fit(_detector(), train, epochs=1, batch_size=16, seed=0, quiet=True).records[0]


def test_warmup_steps_is_the_least_warm_up() -> None:
    from detkit._engine._fit import _lr_scheduler

    scheduler = _lr_scheduler("cosine", 0.1, epochs=10, batches_per_epoch=10, warmup_epochs=1, warmup_steps=20)
    assert scheduler.warmup_steps == 20  # 1 epoch is only 10 steps
    assert _lr_scheduler("cosine", 0.1, 10, 10, warmup_epochs=3, warmup_steps=20).warmup_steps == 30
    # The floor is at most a quarter of the training (50 steps); warmup_epochs is not capped.
    assert _lr_scheduler("cosine", 0.1, 10, 5, warmup_epochs=0, warmup_steps=50).warmup_steps == 12
    with pytest.raises(InputError, match=r"'warmup_epochs' argument \(10\) must be shorter"):
        _lr_scheduler("cosine", 0.1, 10, 5, warmup_epochs=10, warmup_steps=0)
    with pytest.raises(InputError, match="warmup_steps"):
        detkit.fit(_detector(), None, epochs=1, warmup_steps=-1)


def _by_name(detector: SSDDetector) -> dict[str, np.ndarray]:
    return {name: p.data().asnumpy() for name, p in detector.network._collect_params_with_prefix().items()}


def test_ema_epochs_validates_checkpoints_and_returns_the_moving_average_of_the_weights(tiny, tmp_path,
                                                                                         monkeypatch) -> None:
    from detkit._engine import _averaging

    train, val = tiny
    # 32 images at batch 6: 5 steps an epoch, so the folds every 4 steps and at the epochs' ends differ.
    arguments = {"epochs": 2, "batch_size": 6, "seed": 0, "quiet": True, "optimizer_params": {"learning_rate": 0.05}}
    # The weights after every step, spied where the average counts the steps.
    steps: list[dict[str, np.ndarray]] = []
    update = _averaging.WeightAverage.update

    def spy(self) -> None:
        steps.append({name: p.data().asnumpy() for name, p in self._parameters.items()})
        update(self)

    monkeypatch.setattr(_averaging.WeightAverage, "update", spy)
    averaged = _detector()
    averaged._materialize()
    start = _by_name(averaged)
    history = detkit.fit(averaged, train, val, checkpoint_dir=tmp_path, ema_epochs=0.5, **arguments)
    assert len(steps) == 10
    # The documented average, computed here: decay 1 - 1 / (0.5 x 5 steps), less in the first steps; the
    # trained weights folded in every FOLD_EVERY steps and at each epoch's end, the statistics at the ends.
    assert _averaging.FOLD_EVERY == 4
    statistics = {name for name, p in averaged.network._collect_params_with_prefix().items() if p.grad_req == "null"}
    assert statistics  # BatchNorm's running means and variances
    expected, pending = start, {True: 1.0, False: 1.0}
    for t, weights in enumerate(steps, start=1):
        for group in pending:
            pending[group] *= min(1 - 1 / 2.5, (1 + t) / (10 + t))
        for group, due in ((False, t % 4 == 0 or t % 5 == 0), (True, t % 5 == 0)):
            if due:
                expected = {name: pending[group] * value + (1 - pending[group]) * weights[name]
                            if (name in statistics) == group else value for name, value in expected.items()}
                pending[group] = 1.0
    got = _by_name(averaged)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # Averaging changes nothing of the training: the checkpoint keeps the trained weights, equal to a plain run's.
    plain = _detector()
    detkit.fit(plain, train, **arguments)
    trained = _averaging.load_weights_file(tmp_path / "epoch-0002" / "training.params")
    for name, value in _by_name(plain).items():
        np.testing.assert_array_equal(trained[name].asnumpy(), value, err_msg=name)
    assert any(not np.allclose(got[name], value) for name, value in _by_name(plain).items())
    # Validation scored the average, and the checkpoint's detector is the average.
    assert history.last["map_50"] == pytest.approx(detkit.evaluate(averaged, val)["map_50"], abs=1e-12)
    saved = _by_name(SSDDetector.load(tmp_path / "epoch-0002", ctx=mx.cpu()))
    for name in got:
        np.testing.assert_array_equal(saved[name], got[name], err_msg=name)


def test_a_run_with_ema_epochs_resumes_exactly_and_refuses_another_average(tiny, tmp_path) -> None:
    train, _ = tiny
    arguments = {"batch_size": 8, "seed": 4, "quiet": True, "ema_epochs": 1.0,
                 "optimizer_params": {"learning_rate": 0.05, "momentum": 0.9}}
    straight = _detector()
    detkit.fit(straight, train, epochs=3, checkpoint_dir=tmp_path / "a", **arguments)
    detkit.fit(_detector(), train, epochs=2, checkpoint_dir=tmp_path / "b", **arguments)
    with pytest.raises(CheckpointError, match="ema_epochs=1.0, not 2.0"):
        detkit.fit(_detector(), train, epochs=3, checkpoint_dir=tmp_path / "b", resume=True,
                   **{**arguments, "ema_epochs": 2.0})
    resumed = _detector()
    detkit.fit(resumed, train, epochs=3, checkpoint_dir=tmp_path / "b", resume=True, **arguments)
    expected, got = _by_name(straight), _by_name(resumed)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    # A damaged file of trained weights is named, not loaded.
    damaged = tmp_path / "b" / "epoch-0003" / "training.params"
    damaged.write_bytes(damaged.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="training.params is missing or differs from its recorded SHA-256"):
        detkit.fit(_detector(), train, epochs=4, checkpoint_dir=tmp_path / "b", resume=True, **arguments)


def test_an_error_in_a_callback_leaves_the_last_steps_weights_and_damaged_averages_are_named(tiny, tmp_path) -> None:
    train, _ = tiny
    arguments = {"epochs": 1, "batch_size": 8, "seed": 2, "quiet": True, "optimizer_params": {"learning_rate": 0.05}}

    class Fails(detkit.Callback):
        def on_epoch_end(self, epoch, record, detector):
            raise RuntimeError("a callback's own error")

    failed = _detector()
    with pytest.raises(RuntimeError, match="a callback's own error"):
        detkit.fit(failed, train, ema_epochs=1.0, callbacks=[Fails()], **arguments)
    plain = _detector()
    detkit.fit(plain, train, **arguments)
    for name, value in _by_name(plain).items():  # the weights being trained, not the average
        np.testing.assert_array_equal(_by_name(failed)[name], value, err_msg=name)
    # A checkpoint of a run without an average (as an earlier detkit wrote it: no ema_epochs in its settings)
    # resumes only without one.
    detkit.fit(_detector(), train, checkpoint_dir=tmp_path / "plain", **arguments)
    state_file = tmp_path / "plain" / "epoch-0001" / "state.json"
    state = json.loads(state_file.read_text())
    del state["settings"]["ema_epochs"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"without a moving average.*ema_epochs=0"):
        detkit.fit(_detector(), train, **{**arguments, "epochs": 2}, checkpoint_dir=tmp_path / "plain", resume=True,
                   ema_epochs=1.0)
    # A malformed record of the average is damage, named.
    detkit.fit(_detector(), train, checkpoint_dir=tmp_path / "averaged", ema_epochs=1.0, **arguments)
    state_file = tmp_path / "averaged" / "epoch-0001" / "state.json"
    good = json.loads(state_file.read_text())
    for bad in ({"steps": -1, "sha256": good["average"]["sha256"]}, {"steps": True, "sha256": "0"}, {"steps": 4}):
        state_file.write_text(json.dumps({**good, "average": bad}))
        with pytest.raises(CheckpointError, match="'average' is missing or malformed"):
            detkit.fit(_detector(), train, **{**arguments, "epochs": 2}, checkpoint_dir=tmp_path / "averaged",
                       resume=True, ema_epochs=1.0)


def test_ema_epochs_on_two_devices_resumes_exactly(tiny, tmp_path) -> None:
    train, _ = tiny
    arguments = {"batch_size": 8, "seed": 6, "quiet": True, "ema_epochs": 1.0, "devices": [mx.cpu(0), mx.cpu(1)],
                 "optimizer_params": {"learning_rate": 0.05, "momentum": 0.9}}
    straight = _detector()
    detkit.fit(straight, train, epochs=2, checkpoint_dir=tmp_path / "a", **arguments)
    detkit.fit(_detector(), train, epochs=1, checkpoint_dir=tmp_path / "b", **arguments)
    resumed = _detector()
    detkit.fit(resumed, train, epochs=2, checkpoint_dir=tmp_path / "b", resume=True, **arguments)
    expected, got = _by_name(straight), _by_name(resumed)
    assert any(name.endswith("running_mean") for name in expected)  # the statistics are compared too
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
