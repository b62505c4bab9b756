"""The engine layer: fit (a short loop) and its built-in callbacks, checkpoints, history, evaluation, metrics."""

from __future__ import annotations

from ._detections import evaluate_detections
from ._distributed import (DEFAULT_TIMEOUT, RANK_FILE_VARIABLE, TIMEOUT_VARIABLE, WATCHDOG_EXIT_STATUS, is_lead_worker,
                           lead_first, note_failure, worker_label, worker_rank)
from ._evaluate import evaluate
from ._fit import CHECKPOINT_FORMAT, DEFAULT_BATCH_SIZE, SEED_OPTIMIZER_PARAMS, Callback, check_optimizer, fit
from ._history import History
from ._metric import DetectionMetric

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TIMEOUT",
    "RANK_FILE_VARIABLE",
    "SEED_OPTIMIZER_PARAMS",
    "TIMEOUT_VARIABLE",
    "WATCHDOG_EXIT_STATUS",
    "Callback", "DetectionMetric", "History",
    "check_optimizer",
    "evaluate",
    "evaluate_detections",
    "fit",
    "is_lead_worker",
    "lead_first",
    "note_failure",
    "worker_label",
    "worker_rank",
]
