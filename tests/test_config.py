"""YAML configurations: presets, overrides, validation with key paths, and the train command."""

from __future__ import annotations

import json

import numpy as np

import pytest
import yaml

from detkit.cli import main
from detkit.config import Config, build_detector, load_config, preset
from detkit.errors import ConfigError


def _write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_seed_preset_is_the_tutorials_recipe() -> None:
    config = preset("seed")
    assert config.train.epochs == 30 and config.train.batch_size == 32
    assert config.train.optimizer == "sgd"
    assert config.train.optimizer_params == {"learning_rate": 0.1, "wd": 0.0005}
    assert config.model.data_shape == 256 and config.model.backbone == "toy"
    assert config.data.num_train == 1000 and config.data.num_val == 100


def test_examples_pikachu_seed_yaml_is_the_seed_preset() -> None:
    from pathlib import Path

    import mxnet as mx

    example = load_config(Path(__file__).parent.parent / "examples" / "pikachu_seed.yaml")
    seed = preset("seed")
    # The example spells the seed's component arguments out: it builds the same detector.
    built = [build_detector(c, ["pikachu"], ctx=mx.cpu()).get_config() for c in (example, seed)]
    assert built[0] == built[1]
    assert example.data == seed.data
    assert {**example.to_dict()["train"], "output_dir": None} == {**seed.to_dict()["train"], "output_dir": None}


def test_a_file_changes_only_what_it_names_and_overrides_win(tmp_path) -> None:
    path = _write(tmp_path, "train:\n  epochs: 5\nmodel:\n  loss: {name: focal_smooth_l1, gamma: 1.0}\n")
    config = load_config(path, ["train.batch_size=8", "data.root=/tmp/x", "train.optimizer_params={learning_rate: 0.5}"])
    assert config.train.epochs == 5 and config.train.batch_size == 8
    assert config.data.root == "/tmp/x"
    assert config.train.optimizer_params == {"learning_rate": 0.5}
    assert config.model.loss == {"name": "focal_smooth_l1", "gamma": 1.0}
    assert config.train.optimizer == "sgd"  # untouched keys keep the preset's values
    assert load_config(_write(tmp_path, config.to_yaml())).to_dict() == config.to_dict()


def test_a_file_may_start_from_another_preset(tmp_path) -> None:
    path = _write(tmp_path, "preset: fast\ntrain:\n  epochs: 3\n")
    config = load_config(path)
    assert config.train.epochs == 3 and config.train.lr_schedule == "cosine"
    assert load_config(path, base="fast").to_dict() == config.to_dict()
    with pytest.raises(ConfigError, match="starts from the preset 'fast', but 'seed' was asked for"):
        load_config(path, base="seed")


def test_a_non_square_input_size(tmp_path) -> None:
    import mxnet as mx

    config = load_config(_write(tmp_path, "model:\n  data_shape: [64, 96]\n"))
    assert build_detector(config, ["a"], ctx=mx.cpu()).data_shape == (64, 96)


@pytest.mark.parametrize(
    ("text", "overrides", "key", "fragment"),
    [
        ("train:\n  epoch: 5\n", [], "train.epoch", "allowed keys here are: epochs"),
        ("training:\n  epochs: 5\n", [], "training", "model, data, train"),
        ("train:\n  epochs: five\n", [], "train.epochs", "must be an integer; got 'five'"),
        ("train:\n  epochs: 0\n", [], "train.epochs", "at least 1"),
        ("train:\n  resume: 1\n", [], "train.resume", "true or false"),
        ("train:\n  lr_schedule: linear\n", [], "train.lr_schedule", "constant, cosine, step"),
        ("model:\n  backbone: resnet_missing\n", [], "model.backbone", "Registered backbone names: toy"),
        ("model:\n  loss: {gamma: 2}\n", [], "model.loss", "'name' key"),
        ("model:\n  loss: {name: focal_smooth_l1, gama: 2}\n", [], "model.loss", "'gama'"),
        ("model:\n  anchor_generator: {name: multibox_prior, sizes: [[1.5]]}\n", [], "model.anchor_generator", "(0, 1]"),
        ("data:\n  source: recordio\n", [], "data.train", "needs the training file"),
        ("data:\n  source: recordio\n  train: /no/such.rec\n", [], "data.train", "does not exist"),
        ("data:\n  source: s3\n", [], "data.source", "synthetic, shapes, pikachu, recordio"),
        ("data:\n  source: shapes\n  objects: [5, 2]\n", [], "data.objects", "min <= max"),
        ("data:\n  source: shapes\n  objects: [2]\n", [], "data.objects", "[min, max]"),
        ("data:\n  source: shapes\n  objects: [1, 31]\n", [], "data.objects", "at most 30"),
        ("data:\n  source: shapes\n  num_classes: 9\n", [], "data.num_classes", "at most 8"),
        ("train:\n  devices: tpu(0)\n", [], "train.devices", "gpu(N)"),
        ("", ["train.epochs"], "--set", "section.key=value"),
        ("", ["train.epochs=[1"], "train.epochs", "not valid YAML"),
        ("", ["train.epochs.x=1"], "train.epochs", "must be an integer"),
        ("preset: turbo\n", [], "preset", "seed, fast"),
        ("train:\n  threshold: 2\n", [], "train.threshold", "at most 1"),
        ("train:\n  optimizer: adamm\n", [], "train.optimizer", "Known: "),
        ("train:\n  optimizer_params: {learning_rat: 0.1}\n", [], "train.optimizer_params", "'learning_rat'"),
        ("train:\n  warmup_epochs: 1\n", [], "train.warmup_epochs", "cosine"),
        ("train:\n  devices: gpu(7)\n", [], "train.devices", "GPU"),
        ("model:\n  data_shape: [64, 96, 3]\n", [], "model.data_shape", "[H, W]"),
        ("preset: fast\ntrain:\n  epochs: 1\n", [], "train.warmup_epochs", "shorter than the training"),
    ],
)
def test_invalid_configurations_name_their_key(builtins_only, tmp_path, text, overrides, key, fragment) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), overrides)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert fragment in str(caught.value)


def test_a_missing_or_broken_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "train: [\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))


def test_train_print_config_and_errors_from_the_command_line(tmp_path, capsys) -> None:
    assert main(["train", "--preset", "fast", "--set", "train.epochs=2", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 2 and printed["train"]["lr_schedule"] == "cosine"
    assert main(["train", "--set", "train.epochs=zero"]) == 2
    assert "detkit: error: train.epochs: must be an integer" in capsys.readouterr().err


def _refuse_constant(name: str) -> None:
    raise AssertionError(f"bare {name} in JSON that detkit wrote")


def test_print_config_shows_the_chosen_sources_keys_alone(tmp_path, capsys) -> None:
    (tmp_path / "VOC").mkdir()
    assert main(["train", "--preset", "ssd", "--set", "data.source=voc", "--set", f"data.root={tmp_path / 'VOC'}",
                 "--print-config"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert sorted(data) == ["augment", "cache", "classes", "root", "source", "train_split", "val_split"]
    assert main(["train", "--set", "data.source=shapes", "--print-config"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert {"num_classes", "objects", "num_train"} <= set(data) and "train_split" not in data
    # A file of one source's keys reads back as the same configuration.
    config = preset("fast", ["data.source=shapes", "data.num_classes=3"])
    assert load_config(_write(tmp_path, config.to_yaml(every_source=False))) == config


def test_the_output_folder_is_named_after_the_data(tmp_path) -> None:
    (tmp_path / "cards-voc").mkdir()
    voc = preset("ssd", ["data.source=voc", f"data.root={tmp_path / 'cards-voc'}"])
    assert voc.train.output_dir is None and voc.output_folder().as_posix() == "runs/cards-voc"
    assert preset("seed").output_folder().as_posix() == "runs/pikachu"  # data/pikachu, the default
    rec = tmp_path / "mine.rec"
    rec.write_bytes(b"")
    assert preset("fast", ["data.source=recordio", f"data.train={rec}"]).output_folder().as_posix() == "runs/mine"
    assert preset("fast", ["train.output_dir=elsewhere"]).output_folder().as_posix() == "elsewhere"


def test_train_evaluate_predict_from_the_command_line(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main([
        "train", "--set", f"data.root={tmp_path / 'data'}", "--set", "data.num_train=16", "--set", "data.num_val=4",
        "--set", "data.image_size=64", "--set", "model.data_shape=64", "--set", "train.epochs=1",
        "--set", "train.batch_size=8", "--set", f"train.output_dir={out}", "--set", "train.quiet=true",
        "--set", "train.num_pictures=2", "--set", "eval.max_detections=[1, 5, 20]",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "validation mAP@0.5" in printed
    for name in ("model/detector.yaml", "config.yaml", "history.json", "history.png", "metrics.json",
                 "detections/val-000.png", "detections/val-001.png", "checkpoints/last.json"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "history.json").read_text())) == 1
    assert {"mar_1", "mar_5", "mar_20"} <= set(json.loads((out / "metrics.json").read_text()))  # the eval section
    # Strict JSON (the rule of detkit._base._json): a mean over no object size is null, never a bare NaN.
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=_refuse_constant)
    assert None in metrics["coco"].values()  # 64-pixel images: no large objects
    json.loads((out / "history.json").read_text(), parse_constant=_refuse_constant)
    assert Config is not None and load_config(out / "config.yaml").train.epochs == 1

    # The same COCOeval parameters as the eval section that wrote metrics.json.
    assert main(["evaluate", str(out / "model"), str(tmp_path / "data" / "val.rec"), "--json",
                 "--max-detections", "1,5,20"]) == 0
    evaluated = json.loads(capsys.readouterr().out, parse_constant=_refuse_constant)
    assert {k: v for k, v in evaluated.items() if k != "seconds"} == \
        {k: v for k, v in metrics.items() if k != "seconds"}  # one rule for both
    scores = evaluated
    assert scores["num_images"] == 4 and set(scores["per_class"]) == {"pikachu"}

    from PIL import Image

    import detkit

    image = tmp_path / "image.png"
    Image.fromarray(detkit.data.DetectionDataset(tmp_path / "data" / "val.rec", classes=["pikachu"]).image(0)).save(image)
    assert main(["predict", str(out / "model"), str(image), "--out", str(tmp_path / "pics"), "--threshold", "0",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report[0]["image"] == str(image) and (tmp_path / "pics" / "image-detections.png").is_file()
    # Pictures never overwrite the inputs, nor each other when two inputs share a name.
    (tmp_path / "other").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "other" / "image.png")
    before = image.read_bytes()
    assert main(["predict", str(out / "model"), str(image), str(tmp_path / "other" / "image.png"),
                 "--out", str(tmp_path)]) == 0
    assert image.read_bytes() == before
    assert (tmp_path / "image-detections.png").is_file() and (tmp_path / "image-detections-2.png").is_file()
    assert all(set(d) == {"class_id", "class_name", "score", "box"} for d in report[0]["detections"])


def test_a_configuration_with_a_seed_repeats_exactly(tmp_path) -> None:
    from detkit.config import run_config

    histories = []
    for run in ("a", "b"):
        config = preset("fast", [
            f"data.root={tmp_path / 'data'}", "data.num_train=16", "data.num_val=4", "data.image_size=64",
            "model.data_shape=64", "train.epochs=1", "train.batch_size=8", f"train.output_dir={tmp_path / run}",
            "train.quiet=true", "train.num_pictures=0", "train.seed=3", "train.warmup_epochs=0.5",
        ])
        histories.append(run_config(config)[1])
    assert histories[0]["loss"] == histories[1]["loss"] and histories[0]["map_50"] == histories[1]["map_50"]


def test_fit_arguments_are_the_recipe_for_fit() -> None:
    import inspect

    import detkit

    recipe = preset("fast")
    arguments = recipe.fit_arguments()
    assert set(arguments) <= set(inspect.signature(detkit.fit).parameters)
    assert (arguments["epochs"], arguments["lr_schedule"], arguments["warmup_epochs"]) == (10, "cosine", 1.0)
    assert arguments["optimizer_params"] == {"learning_rate": 0.01, "momentum": 0.9, "wd": 0.0005}
    arguments["optimizer_params"]["learning_rate"] = 1.0  # a copy: the configuration keeps its value
    assert recipe.train.optimizer_params["learning_rate"] == 0.01
    # The detector of the same recipe has the recipe's loss setting.
    detector = build_detector(recipe, classes=["pikachu"])
    assert detector.get_config()["components"]["loss"]["kwargs"]["normalization"] == "positives"


def test_run_config_writes_nothing_before_fit_accepts_the_configuration(tmp_path, capsys) -> None:
    from detkit.config import run_config

    out = tmp_path / "run"
    sizes = ["data.num_train=4", "data.num_val=2", "data.image_size=64", "model.data_shape=64",
             f"data.root={tmp_path / 'data'}", f"train.output_dir={out}", "train.quiet=true"]
    # One batch of 8 does not fit 4 images: refused before config.yaml is written, in the key's terms.
    config = preset("seed", sizes + ["train.batch_size=8", "train.epochs=1"])
    with pytest.raises(ConfigError) as caught:
        run_config(config)
    assert caught.value.key == "train.batch_size" and "lower train.batch_size" in str(caught.value)
    assert not out.exists()
    # A configuration changed in Python is validated as a file is.
    config = preset("fast", sizes + ["train.batch_size=2", "train.epochs=2"])
    config.train.warmup_epochs = 3.0
    with pytest.raises(ConfigError) as caught:
        run_config(config)
    assert caught.value.key == "train.warmup_epochs" and not out.exists()
    # What the detector refuses is said in the key's terms too.
    with pytest.raises(ConfigError) as caught:
        run_config(preset("seed", sizes + ["model.data_shape=32"]))
    assert caught.value.key == "model.data_shape" and "at least 64" in str(caught.value) and not out.exists()
    # From the command line: the key path, and no output folder.
    text = "preset: fast\ntrain:\n  epochs: 1\n  output_dir: " + str(out) + "\n"
    assert main(["train", str(_write(tmp_path, text))]) == 2
    assert "detkit: error: train.warmup_epochs: the warm-up (1 epoch) must be shorter" in capsys.readouterr().err
    assert not out.exists()


def test_the_ssd_preset_is_the_recipe_for_real_data(monkeypatch) -> None:
    # Validating names the ImageNet weights but reads nothing: nothing listens on port 9.
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")
    config = preset("ssd")
    assert config.model.backbone == {"name": "resnet18_v1", "pretrained": True}
    assert config.model.loss == "ssd_multibox"
    # From random weights on real photos SSD's augmentation and 0.005 stayed at noise level (the training guide).
    assert config.data.augment == "seed" and config.train.optimizer_params["learning_rate"] == 0.001
    assert config.train.clip_gradient_norm >= 500  # ResNet-18's gradient norm is in the hundreds: spikes only
    # Validation on a small real set swings from epoch to epoch: ssd scores the weights' average.
    assert config.train.ema_epochs > 0 and preset("seed").train.ema_epochs == 0
    assert preset("ssd").fit_arguments()["ema_epochs"] == config.train.ema_epochs
    sizes = config.model.anchor_generator["sizes"]
    assert sizes[0][0] < 0.1  # SSD's scales start below the seed's 0.2: small objects get anchors
    assert [pair[0] for pair in sizes] == sorted(pair[0] for pair in sizes)
    # GluonCV's schedule (divided by 10 at 2/3 and 5/6): the last third of training is at a low rate.
    assert config.train.lr_schedule == "step" and config.train.warmup_epochs < config.train.epochs


def test_the_ssd_preset_trains_from_random_weights_at_a_small_size(tmp_path) -> None:
    import mxnet as mx

    import detkit

    train, val = detkit.data.synthetic_pikachu(tmp_path / "pikachu", num_train=8, num_val=4, image_size=96,
                                               progress=False)
    config = preset("ssd", ["model.backbone.pretrained=false", "model.data_shape=64", "train.epochs=2",
                            "train.batch_size=4", "train.warmup_epochs=0.5", "train.quiet=true"])
    detector = build_detector(config, train.classes, ctx=mx.cpu())
    train.augment = config.data.augment
    history = detkit.fit(detector, train, val, **config.fit_arguments())
    assert history["epoch"] == [1, 2]
    assert all(np.isfinite(loss) and loss > 0 for loss in history["loss"])
    assert all(0 <= value <= 1 for value in history["map_50"])


def test_a_preset_names_the_plugins_it_needs_when_they_are_missing(builtins_only) -> None:
    with pytest.raises(ConfigError) as caught:
        preset("ssd")
    assert caught.value.key == "model.backbone"
    message = str(caught.value)
    assert "There is no backbone named 'resnet18_v1'" in message
    assert "pip install gluon-detkit-resnet gluon-detkit-losses" in message


def test_ctrl_c_during_train_says_where_it_stopped_and_how_to_resume(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-c", "import sys; from detkit.cli import main; sys.exit(main())", "train",
               "--preset", "fast", "--set", f"data.root={tmp_path / 'data'}", "--set", "data.num_train=8",
               "--set", "data.num_val=2", "--set", "data.image_size=64", "--set", "model.data_shape=64",
               "--set", "train.epochs=500", "--set", "train.batch_size=8", "--set", f"train.output_dir={out}",
               "--set", "train.quiet=true"]
    # A shell's background job ignores SIGINT, and Python keeps an ignored SIGINT ignored: the child starts with
    # the default, as a terminal's foreground command does, wherever this suite runs.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoints" / "last.json").is_file() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.count("detkit: interrupted:") == 1, stderr
    last = json.loads((out / "checkpoints" / "last.json").read_text())["checkpoint"]
    assert f"the last checkpoint, after epoch {int(last.split('-')[-1])}, is {out / 'checkpoints' / last}" in stderr
    assert f"Resume with: detkit train {out / 'config.yaml'} --set train.resume=true" in stderr


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved(tmp_path, capsys, monkeypatch) -> None:
    import detkit._cli._train

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(detkit._cli._train, "run_config", interrupted)
    assert main(["train", "--set", f"train.output_dir={tmp_path / 'run'}"]) == 130
    assert capsys.readouterr().err == (
        f"detkit: interrupted: no checkpoint was saved yet in {tmp_path / 'run' / 'checkpoints'}; run the same "
        "command again to start over (an epoch is saved as it ends).\n")


def test_json_that_detkit_writes_has_null_for_non_finite_numbers() -> None:
    from detkit import History
    from detkit._base import json_text

    text = json_text({"ap": float("nan"), "rows": [1.5, float("inf"), (float("-inf"), 2)], "n": 3})
    assert json.loads(text, parse_constant=_refuse_constant) == {"ap": None, "rows": [1.5, None, [None, 2]], "n": 3}
    history = History([{"epoch": 1, "loss": 0.5, "map_50": float("nan")}])
    assert json.loads(history.to_json(), parse_constant=_refuse_constant) == [{"epoch": 1, "loss": 0.5, "map_50": None}]



def test_a_coco_results_file_refuses_non_finite_numbers_rather_than_null(tmp_path) -> None:
    # pycocotools reads no null score or box: a NaN there is an error, and no file is written.
    from detkit._engine._detections import write_coco_results

    entry = {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 1.0, 1.0], "score": float("nan")}
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_coco_results(tmp_path / "detections.json", [entry])
    assert not (tmp_path / "detections.json").exists()
    assert json.loads(write_coco_results(tmp_path / "detections.json", [{**entry, "score": 0.5}]).read_text()) == \
        [{**entry, "score": 0.5}]


def test_predict_a_folder_with_a_progress_bar_and_set_a_component(tmp_path, capsys) -> None:
    from PIL import Image

    from detkit import SSDDetector

    SSDDetector(classes=["pikachu"], data_shape=64).save(tmp_path / "model")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.JPEG"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "pictures"
    assert main(["predict", str(tmp_path / "model"), str(folder), "--out", str(out), "--threshold", "0",
                 "--set", "post_processor.nms_threshold=0.3", "--set", "post_processor.nms_topk=5"]) == 0
    captured = capsys.readouterr()
    assert sorted(path.name for path in out.iterdir()) == ["a-detections.png", "b-detections.png",
                                                           "c-detections.png"]
    assert "predict" in captured.err and "3/3" in captured.err  # the progress bar, on stderr
    assert [line.split(":")[0] for line in captured.out.splitlines() if not line.startswith(" ")] == \
        [str(folder / name) for name in ("a.jpg", "b.png", "c.JPEG")]
    # --set reaches the post-processor: at most nms_topk detections an image.
    assert main(["predict", str(tmp_path / "model"), str(folder), "--out", str(out), "--threshold", "0", "--json",
                 "--set", "post_processor.nms_topk=2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report) == 3 and all(len(item["detections"]) <= 2 for item in report)
    # A folder without images, and a --set that is not COMPONENT.KEY=VALUE: one error line each.
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "model"), str(tmp_path / "empty")]) == 2
    assert "holds no image files" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "model"), str(folder), "--set", "backbone.filters=[8]"]) == 2
    assert "COMPONENT one of target_assigner, loss, post_processor" in capsys.readouterr().err


def test_a_run_resumes_from_its_own_resolved_config(tmp_path, monkeypatch, capsys) -> None:
    # The command that an interrupted `detkit train` prints: OUTPUT/config.yaml, written by detkit (listed in
    # the folder's manifest), may be read and rewritten; a configuration of the user's there may not.
    monkeypatch.chdir(tmp_path)
    tiny = ["--set", "data.num_train=8", "--set", "data.num_val=2", "--set", "data.image_size=64",
            "--set", "model.data_shape=64", "--set", "train.batch_size=8", "--set", "train.quiet=true",
            "--set", "train.num_pictures=0", "--set", "data.root=d", "--set", "train.epochs=2"]
    assert main(["train", "--preset", "fast", *tiny, "--set", "train.output_dir=out"]) == 0
    assert main(["train", "out/config.yaml", "--set", "train.resume=true"]) == 0
    assert "trained 2 epochs" in capsys.readouterr().out
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("# mine\npreset: fast\ntrain: {output_dir: mine}\n")
    assert main(["train", str(mine / "config.yaml"), *tiny[:-2]]) == 2
    assert "would write the resolved configuration over" in capsys.readouterr().err
    assert (mine / "config.yaml").read_text().startswith("# mine")
