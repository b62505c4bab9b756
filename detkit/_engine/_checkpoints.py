"""Training checkpoints: ``epoch-NNNN/`` folders with ``last``/``best`` pointers, written atomically."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import mxnet as mx
from mxnet import gluon

from .._base import (
    FolderSnapshot,
    PathLike,
    folder_generation,
    load_json_file,
    load_json_text,
    read_consistent,
    resolve,
    settle,
    storage_errors,
)
from .._model import SSDDetector, file_sha256, read_detector_config
from ..errors import CheckpointError, StorageError
from ._averaging import TRAINING_WEIGHTS_FILE, save_weights_file
from ._optimizer_state import OPTIMIZER_FILE, save_optimizer_state

__all__ = ["CHECKPOINT_FORMAT", "Checkpoints", "check_resumable", "read_checkpoint"]

#: The ``format`` of a checkpoint's ``state.json``.
CHECKPOINT_FORMAT = "detkit-checkpoint/2"
STATE_FILE = "state.json"
#: The pickled trainer states of format 1, never read: unpickling a file can run any code in it.
LEGACY_TRAINER_FILE = "trainer.states"
_LEGACY_FORMAT = "detkit-checkpoint/1"
_NAME_PREFIX = "epoch-"
_MAX_EPOCHS = 10**7


class Checkpoints:
    """``epoch-NNNN/`` folders (detector, trainer states, state) with ``last`` and ``best`` pointers.

    A folder is complete before it gets its final name (written under a
    temporary name, then renamed), and a pointer is replaced atomically after
    it, so an interrupted write leaves the previous checkpoint as it was. A
    pointer names a folder of this directory and nothing else.
    """

    def __init__(self, directory: PathLike) -> None:
        self.directory = Path(directory)

    def _pointer(self, which: str) -> Path:
        return self.directory / f"{which}.json"

    def path(self, which: str, snapshot: FolderSnapshot | None = None) -> Path | None:
        """The checkpoint that ``last.json`` or ``best.json`` names, or ``None`` without a pointer.

        The pointer and the folder it names are read from one snapshot of the directory's manifest:
        ``snapshot`` (that of a caller that reads more of the directory), else one of this call's own.
        """
        if snapshot is None:
            return read_consistent(self.directory, lambda own: self.path(which, own))
        pointer = snapshot.path(f"{which}.json")
        if not pointer.is_file():
            return None
        try:
            name = load_json_text(pointer.read_text(encoding="utf-8"), max_depth=2)["checkpoint"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{pointer} is not a checkpoint pointer: {error}") from error
        # Only the plain name of a checkpoint folder here: no separators, no "..", nothing absolute.
        if (not isinstance(name, str) or not name.startswith(_NAME_PREFIX) or Path(name).name != name
                or name in (".", "..")):
            raise CheckpointError(
                f"{pointer} points to {name!r}, which is not a checkpoint folder of {self.directory}; "
                "delete the pointer or restore it from a good copy."
            )
        path = snapshot.path(name)
        if not (path / STATE_FILE).is_file():
            raise CheckpointError(f"{pointer} points to {path}, which holds no complete checkpoint")
        return path

    def settle(self) -> None:
        """Finish or clean a write that a killed run left (only while this process holds the directory's lock)."""
        settle(self.directory)

    def _legacy(self, directory: Path) -> list[str]:
        """In a directory of an earlier detkit (no manifest): its pointers and the checkpoints they name."""
        names = []
        for which in ("last", "best"):
            try:
                path = self.path(which)
            except CheckpointError:
                continue
            if path is not None:
                names += [f"{which}.json", path.name]
        return names

    def write(self, epoch: int, detector: SSDDetector, trainer: gluon.Trainer, state: Mapping[str, Any],
              best: bool, trained: tuple[dict[str, mx.nd.NDArray], int] | None = None) -> Path:
        """Write the checkpoint of ``epoch`` (0-based), move ``last`` (and ``best``) to it, drop older ones.

        ``trained``: when the detector holds the moving average of the weights, the weights being
        trained (name -> array), written to ``training.params``, and the steps in the average; the
        state's ``average`` records both (``{"steps": N, "sha256": ...}``).

        The directory is written as one generation of its manifest (the caller
        holds its lock): the new checkpoint and pointers appear together, and
        the checkpoints that are neither last nor best are removed after; a
        folder or file the manifest does not list (a copy of yours such as
        ``epoch-0001-backup``) is never touched.
        """
        name = f"{_NAME_PREFIX}{epoch + 1:04d}"
        final = self.directory / name
        best_path = None if best else self.path("best")
        # The pointers count epochs as the folder names and the history do: from 1.
        pointer = json.dumps({"checkpoint": name, "epoch": epoch + 1})
        try:
            with folder_generation(self.directory, "checkpoints", purpose="training checkpoints",
                                   legacy=self._legacy, locked=True) as generation:
                staged = generation.path(name)
                staged.mkdir()
                detector.save(staged)
                save_optimizer_state(trainer, staged)
                if trained is not None:
                    weights, steps = trained
                    save_weights_file(weights, staged / TRAINING_WEIGHTS_FILE, final / TRAINING_WEIGHTS_FILE)
                    state = {**state, "average": {"steps": int(steps),
                                                  "sha256": file_sha256(staged / TRAINING_WEIGHTS_FILE)}}
                with storage_errors(final / STATE_FILE):
                    (staged / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
                generation.path("last.json").write_text(pointer, encoding="utf-8")
                if best:
                    generation.path("best.json").write_text(pointer, encoding="utf-8")
                elif best_path is not None:
                    generation.keep("best.json")
                    generation.keep(best_path.name)
        except StorageError as error:  # named by the checkpoint's final name, not its temporary one
            final_name = str(self.directory)
            pattern = re.escape(final_name) + r"/\.detkit-stage-\d+"
            message = re.sub(pattern, lambda _match: final_name, str(error))
            raise StorageError(f"{message} The previous checkpoint is intact.") from None
        return final


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The ``state.json`` of the checkpoint folder ``path``, checked to be a detkit checkpoint."""
    source = path / STATE_FILE
    if not source.is_file():
        raise CheckpointError(f"{source} is missing or not a file; the checkpoint is incomplete.")
    state = load_json_file(source, what="checkpoint state", max_bytes=64 << 20, max_depth=8,
                           error=lambda why: CheckpointError(f"{source} cannot be read: {why}; the checkpoint is "
                                                             "damaged (resume from another one, or start afresh)."))
    if isinstance(state, dict) and (state.get("format") == _LEGACY_FORMAT
                                    or (path / LEGACY_TRAINER_FILE).exists() and not (path / OPTIMIZER_FILE).exists()):
        raise CheckpointError(
            f"{path} was written by an earlier detkit that pickled the optimizer state ({LEGACY_TRAINER_FILE}); "
            "detkit no longer loads pickles, which can run code. Start afresh, or load its weights with "
            "SSDDetector.load and train from them in a new checkpoint directory."
        )
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a detkit training checkpoint")
    # The schema: what resuming reads, of the right type.
    for key, valid in (
        ("epoch", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _MAX_EPOCHS),
        ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64),
        ("history", lambda v: isinstance(v, list) and len(v) == state.get("epoch", -2) + 1 and all(
            isinstance(r, dict) and isinstance(r.get("loss"), (int, float)) and not isinstance(r["loss"], bool)
            and math.isfinite(r["loss"]) and all(
                isinstance(name, str) and (value is None or (isinstance(value, bool) if name == "validated" else (
                    isinstance(value, (int, float)) and not isinstance(value, bool))))
                for name, value in r.items()) for r in v)),
        ("settings", lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v)),
        # Optional: a run that averages its weights (fit's ema_epochs).
        ("average", lambda v: v is None or isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(
            v.get("steps"), int) and not isinstance(v["steps"], bool) and 0 <= v["steps"] < 2**62),
    ):
        if key == "average" and key not in state:
            continue
        if key not in state or not valid(state[key]):
            raise CheckpointError(
                f"{path / STATE_FILE} is not a valid checkpoint state: {key!r} is missing or malformed; "
                "the checkpoint is damaged (resume from another one, or start afresh)."
            )
    return state


def check_resumable(path: Path, state: Mapping[str, Any], detector: SSDDetector,
                    settings: Mapping[str, Any]) -> None:
    """Refuse to resume with another detector or other settings than the checkpoint was trained with."""
    config_path = resolve(path, "detector.yaml")
    if not config_path.is_file():  # missing, or a pipe that would block the read
        raise CheckpointError(f"{path / 'detector.yaml'} is missing or not a file; the checkpoint is incomplete.")
    saved = read_detector_config(config_path)
    current = detector.get_config()
    for key in ("classes", "scale_filters", "data_shape", "components"):
        if _without_provenance(saved.get(key)) != _without_provenance(current.get(key)):
            raise CheckpointError(
                f"The checkpoint {path} was trained with another detector ({key} differs); build the "
                "detector as it was (SSDDetector.load of the checkpoint shows it) or start afresh."
            )
    for key, value in (state.get("settings") or {}).items():
        if key == "epochs" and value is None:
            continue
        if key == "optimizer_params" and isinstance(value, dict):
            given = settings.get(key) or {}
            for name in sorted(set(value) | set(given)):
                if value.get(name) != given.get(name):
                    raise CheckpointError(
                        f"The checkpoint {path} was trained with the optimizer setting {name}={value.get(name)!r}, "
                        f"not {given.get(name)!r}; resume with the same optimizer_params (a change is never "
                        "applied to a resumed run), or start afresh in another checkpoint directory."
                    )
            continue
        if settings.get(key) != value:
            raise CheckpointError(
                f"The checkpoint {path} was trained with {key}={value!r}, not {settings.get(key)!r}; "
                f"resume with the same {key}, or start afresh in another checkpoint directory."
            )


def _without_provenance(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_provenance(v) for k, v in value.items() if k != "provided_by"}
    return value
