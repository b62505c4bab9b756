"""The reference texts that the docs generate from the code: configuration keys, presets, commands.

Plain functions returning reStructuredText lines, without Sphinx, so that the
tests can check them without building the docs; ``detkit_docs`` turns them into
directives.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import textwrap
import typing
from typing import Any, Iterator

# -- configuration reference ---------------------------------------------------------------


def import_object(name: str) -> Any:
    """The object a dotted name such as ``detkit.data.DetectionDataset`` names."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            value = getattr(value, attribute)
        return value
    raise ImportError(name)


def _type_text(hint: Any) -> str:
    """A YAML user's name for a type hint: ``int``, ``list of str or null``, ``name or mapping``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:
        if set(args) == {str, typing.Dict[str, Any]} or (str in args and any(typing.get_origin(a) is dict for a in args)):
            return "component: a registered name, or a mapping with ``name`` and the arguments"
        parts = [_type_text(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin is list:
        return f"list of {_type_text(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _yaml(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    return text


def config_fields(section: str) -> list[tuple[str, str, str, str, str]]:
    """``(key, type, default, constraint, description)`` of every key of ``section``, in definition order."""
    from detkit import config

    sections = {f.name: f for f in dataclasses.fields(config.Config)}
    if section not in sections:
        raise ValueError(f"unknown configuration section {section!r}; the sections are {', '.join(sections)}")
    from detkit._config import field_types

    cls = field_types(config.Config)[section]
    hints = field_types(cls)
    rows = []
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default: Any = field.default
        elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        else:  # pragma: no cover - every key has a default
            default = None
        constraints = []
        if field.metadata.get("choices"):
            constraints.append("one of " + ", ".join(f"``{c}``" for c in field.metadata["choices"]))
        if field.metadata.get("minimum") is not None:
            constraints.append(f"at least {field.metadata['minimum']}")
        rows.append((
            f"{section}.{field.name}",
            _type_text(hints[field.name]),
            _yaml(default),
            "; ".join(constraints),
            str(field.metadata.get("doc", "")).strip(),
        ))
    return rows


def config_sections() -> list[str]:
    from detkit import config

    return [f.name for f in dataclasses.fields(config.Config)]


def config_reference_rst(section: str) -> list[str]:
    lines = []
    for key, type_text, default, constraint, doc in config_fields(section):
        lines += [f".. confval:: {key}", f"   :type: {type_text}", f"   :default: ``{default}``", ""]
        lines += [f"   {doc}" if doc else "   (undocumented)"]
        if constraint:
            lines += ["", f"   Allowed: {constraint}."]
        lines.append("")
    return lines


def presets_rst() -> list[str]:
    from detkit import config

    lines = []
    for name, values in config.PRESETS.items():
        lines += [f"``{name}``", ""]
        if values:
            import yaml

            text = yaml.safe_dump(_plain(values), sort_keys=False)
            lines += ["   .. code-block:: yaml", ""] + [f"      {line}" for line in text.splitlines()] + [""]
        else:
            lines += ["   Every key at its default (the seed's recipe).", ""]
    return lines


def _plain(value: Any) -> Any:
    if isinstance(value, typing.Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- command-line reference ----------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse has no public way to walk its subparsers
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                yield name, helps.get(name, ""), subparser


def cli_commands(parser: argparse.ArgumentParser | None = None, prefix: str = "detkit") -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """``(program, help, parser)`` for ``detkit`` and each of its commands and subcommands, depth first."""
    if parser is None:
        from detkit import cli

        parser = cli._build_parser()
        yield prefix, parser.description or "", parser
    for name, help_text, subparser in _subcommands(parser):
        program = f"{prefix} {name}"
        yield program, help_text, subparser
        yield from cli_commands(subparser, program)


def _option_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


def _text(text: str) -> str:
    """Help text as reStructuredText: `code` becomes a literal; ``*``, ``@`` and ``\\`` stay as they are."""
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("@", "\\@")  # "mAP@0.5" is no e-mail
    return re.sub(r"`([^`]+)`", r"``\1``", text)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    text = _text(formatter._expand_help(action)) if action.help else ""
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text = (text + " " if text else "") + "Choices: " + ", ".join(f"``{c}``" for c in action.choices) + "."
    if action.required and action.option_strings:
        text = (text + " " if text else "") + "Required."
    return text


def cli_reference_rst() -> list[str]:
    lines: list[str] = []
    for program, help_text, parser in cli_commands():
        if any(True for _ in _subcommands(parser)) and program != "detkit":
            lines += [f".. rubric:: ``{program}``", ""]
            lines += [_text(textwrap.fill(parser.description or help_text)), ""]
            lines += ["Subcommands: " + ", ".join(f"``{program} {name}``" for name, _, _ in _subcommands(parser)) + ".", ""]
            continue
        lines += [f".. rubric:: ``{program}``", "", f".. program:: {program}", ""]
        description = parser.description or help_text
        if description:
            lines += [_text(textwrap.fill(description)), ""]
        usage = parser.format_usage().strip()
        lines += [".. code-block:: text", ""] + [f"   {line}" for line in usage.splitlines()] + [""]
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            lines += [f".. option:: {_option_name(action)}", ""]
            text = _help(parser, action)
            if text:
                lines += [f"   {text}", ""]
    return lines


# -- measured figures (benchmarks/results) -------------------------------------------------


def _list_table(header: list[str], rows: list[list[str]], widths: str) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}"] + [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def profile_table_rst(result: dict[str, Any]) -> list[str]:
    """The share of a training step per group of operators, from ``benchmarks/profile_step.py``'s JSON."""
    settings = result["settings"]
    rows = [[row["group"], f"{row['ms']:.0f}", f"{row['share']:.1%}"] for row in result["groups"]]
    rows.append(["**all operators**", f"**{result['operator_ms_per_step']:.0f}**", "**100%**"])
    lines = [
        f"One training step at {settings['image_size']}x{settings['image_size']}, batch {settings['batch_size']}, "
        f"on {settings['cpus']} CPU cores (MXNet {settings['mxnet']}, mean of {settings['steps']} profiled steps):",
        "",
        *_list_table(["operators", "ms per step", "share"], rows, "60 20 20"),
    ]
    layers = result.get("convolution_layers", [])
    if layers:
        lines += ["Each convolution layer timed alone, forward and backward, and the arithmetic rate it reaches:", ""]
        lines += _list_table(["layer (in -> out channels @ size)", "forward, ms", "forward + backward, ms", "GFLOP/s"],
                             [[row["layer"], f"{row['forward_ms']:.1f}", f"{row['train_ms']:.1f}",
                               f"{row['train_gflops']:.0f}"] for row in layers], "40 20 20 20")
    return lines


def _figure(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def benchmark_table_rst(result: dict[str, Any]) -> list[str]:
    """detkit beside the tutorial, then the speed targets, from ``benchmarks/bench.py``'s JSON."""
    settings = result["settings"]
    rows = []
    for key, figure in result["figures"].items():
        mine, theirs = result["detkit"].get(key), result["tutorial"].get(key)
        if figure["higher_is_better"] is None or mine is None or theirs is None:
            continue
        ratio = mine / theirs if figure["higher_is_better"] else theirs / mine
        unit = f" {figure['unit']}" if figure["unit"] else ""
        rows.append([figure["label"], f"{_figure(mine)}{unit}", f"{_figure(theirs)}{unit}", f"{ratio:.2f}x"])
    lines = [
        f"{settings['image_size']}x{settings['image_size']}, batch {settings['batch_size']}, device "
        f"``{settings['device']}``, {settings['cpus']} cores, {settings['batches']} timed batches, best of "
        f"{settings.get('rounds', 1)} round(s):",
        "",
        *_list_table(["figure", "detkit", "tutorial", "detkit better by"], rows, "40 20 20 20"),
    ]
    targets = [[t["target"], t["goal"], f"{t['measured']:.2f}",
                ("yes" if t["met"] else "**no**") + (f" ({t['reason']})" if t.get("reason") else "")]
               for t in result.get("targets", [])]
    if targets:
        lines += ["The performance targets, as measured in that run:", ""]
        lines += _list_table(["target", "goal", "measured", "met"], targets, "46 24 15 15")
    return lines


def recipes_table_rst(result: dict[str, Any]) -> list[str]:
    """Each recipe's last epoch and its time, from ``benchmarks/recipes.py``'s JSON."""
    recipes = result.get("recipes") or {}
    if not recipes:
        return ["This results file has no recipes yet: run ``python benchmarks/recipes.py``.", ""]
    first = next(iter(recipes.values()))
    base = sum(r["seconds"] for r in first) / len(first)
    rows = []
    for name, records in recipes.items():
        seconds = sum(r["seconds"] for r in records) / len(records)
        last = records[-1]
        rows.append([f"``{name}``", str(last["epoch"]), f"{last['map_50']:.3f}", f"{last['map_50_95']:.3f}",
                     f"{seconds:.0f} ({seconds / base:.1f}x)", f"{sum(r['seconds'] for r in records) / 60:.1f}"])
    return [
        f"The last epoch of each recipe, measured in one run ({result.get('machine', 'see the JSON file')}); "
        f"seconds of training per epoch (validation not counted), the ratio to ``{next(iter(recipes))}``'s:",
        "",
        *_list_table(["recipe", "epochs", "mAP@0.5", "mAP@[.5:.95]", "seconds / epoch", "training minutes"], rows,
                     "22 10 14 16 22 16"),
    ]


def cards_table_rst(result: dict[str, Any]) -> list[str]:
    """Each system and recipe over its seeds at one budget, from ``benchmarks/recipes_cards.py``'s JSON."""
    rows_in = result.get("rows") or []
    if not rows_in:
        return ["This results file has no runs yet: run ``python benchmarks/recipes_cards.py``.", ""]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows_in:
        groups.setdefault((row["system"], row["recipe"]), []).append(row)

    def per_epoch(runs: list[dict[str, Any]]) -> float:
        return sum(r["seconds"] / max(r["epochs"], 1) for r in runs) / len(runs)

    base = next((per_epoch(runs) for (system, recipe), runs in groups.items() if recipe == "fast"), None)

    def spread(values: list[float]) -> str:
        mean = sum(values) / len(values)
        return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ({min(values):.3f}-{max(values):.3f})"

    rows = []
    for (system, recipe), runs in groups.items():
        seconds = per_epoch(runs)
        epochs = sorted({r["epochs"] for r in runs})
        healthy = [r for r in runs if not r["diverged"]]
        rows.append([
            f"detkit ``{recipe}``" if system == "detkit" else f"GluonCV ``{recipe}``",
            str(len(runs)),
            "-".join(str(e) for e in (epochs[0], epochs[-1])) if len(epochs) > 1 else str(epochs[0]),
            f"{seconds:.1f}" + (f" ({seconds / base:.1f}x)" if base else ""),
            spread([r["map_50"] for r in runs]),
            spread([r["map_50_95"] for r in runs]),
            f"{len(runs) - len(healthy)} / {sum(bool(r.get('collapsed')) for r in healthy)}",
        ])
    return [
        f"Each recipe at the same budget ({result.get('budget_cpu_seconds', '?')} {result.get('budget', 'seconds')}), "
        f"input {result.get('data_shape', '?')} x {result.get('data_shape', '?')}, scored at the end of the budget "
        "on the test photos: the mean over the seeds (min-max); CPU seconds of training per epoch, the ratio to "
        "``fast``'s; runs that diverged / collapsed (an epoch of the last third below 0.8 x the run's best "
        "mAP@0.5).",
        "",
        *_list_table(["recipe", "seeds", "epochs", "CPU s / epoch", "mAP@0.5", "mAP@[.5:.95]",
                      "diverged / collapsed"], rows, "22 8 8 14 18 18 12"),
    ]


def precision_table_rst(result: dict[str, Any]) -> list[str]:
    """fp32, INT8 and bf16 of one trained detector, from ``benchmarks/bench.py``'s JSON (its ``precision``)."""
    precision = result.get("precision") or {}
    if not precision.get("fp32"):
        return ["This results file has no fp32/INT8/bf16 rows yet: run ``python benchmarks/bench.py``.", ""]
    model = precision.get("model", {})
    rows = []
    ort = precision.get("onnxruntime") or {}
    for label, row in (("MXNet fp32", precision.get("fp32")), ("MXNet INT8", precision.get("int8")),
                       ("ONNX Runtime fp32", ort.get("fp32")), ("ONNX Runtime INT8", ort.get("int8"))):
        if row:
            rows.append([label, f"{row['infer_img_s']:.1f}", f"{row['predict_latency_ms']:.2f}",
                         f"{row['map_50']:.4f}", f"{row['map_50_95']:.4f}"])
    shape = model.get("data_shape") or ["?", "?"]
    lines = [
        f"One trained detector ({model.get('trained', 'see the JSON file')}), input {shape[0]}x{shape[1]}, "
        f"batch {result['settings']['batch_size']}, measured in one run:",
        "",
        *_list_table(["runtime and precision", "inference (img/s)", "predict (ms)", "mAP@0.5", "mAP@[.5:.95]"], rows,
                     "20 20 20 20 20"),
    ]
    if ort.get("parity"):
        parity = ort["parity"]
        lines += [f"ONNX Runtime {ort.get('onnxruntime_version', '')} ran the detector exported to ONNX "
                  f"(``detkit export --format onnx``); its detections on the validation set differed from MXNet's "
                  f"by at most {parity['max_box_error']:.1e} in a box coordinate and {parity['max_score_error']:.1e} "
                  f"in a score, with {parity['images_with_other_detections']} images whose detections differ. Its "
                  "INT8 is ONNX Runtime's static quantization (QDQ, per channel), calibrated on training images.", ""]
    elif "skipped" in ort:
        lines += [f"ONNX Runtime was not measured: {ort['skipped']}.", ""]
    bf16 = precision.get("bf16") or {}
    if "network_img_s" in bf16:
        ratio = bf16["network_img_s"] / bf16["fp32_network_img_s"]
        # Runs of one machine differ by about 10 %: only a clear gain counts.
        verdict = ("faster" if ratio >= 1.1 else
                   "not clearly faster (runs differ by about 10 %), so detkit does not offer it and fp32 stays "
                   "the default")
        lines += [f"bfloat16 (MXNet's AMP conversion, the anchors in fp32): the network ran "
                  f"{bf16['network_img_s']:.1f} img/s against fp32's {bf16['fp32_network_img_s']:.1f} in the same "
                  f"run ({ratio:.2f}x), {verdict}; mean relative error of its outputs {bf16['relative_error']:.4f}.", ""]
    elif bf16:
        lines += [f"bfloat16 was not measured: {bf16.get('skipped')}.", ""]
    peer = precision.get("gluoncv") or {}
    if "train_img_s" in peer:
        lines += [f"GluonCV's SSD, {peer['model']}, measured in the same run as a peer: its train step "
                  f"{peer['train_img_s']:.1f} img/s, its inference with NMS {peer['infer_img_s']:.1f} img/s (detkit's "
                  f"fp32 fit and inference are in the table above).", ""]
    elif peer:
        lines += [f"GluonCV's SSD was not measured: {peer.get('skipped')}.", ""]
    conv = precision.get("conv_gflops") or {}
    if conv:
        lines += [f"A 3x3 convolution 64->64 at 64x64, batch 32, ran at {conv['fp32']:.0f} GFLOP/s in fp32 and "
                  f"{conv['int8']:.0f} GFLOP/s in INT8 ({conv['int8'] / conv['fp32']:.2f}x); CPU flags: "
                  f"{', '.join(precision.get('cpu_flags') or []) or 'none of AVX-512'}.", ""]
    return lines
