"""benchmarks/bench.py --quick: runs, exits 0, and writes every documented figure."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"

FIGURES = [
    "train_img_s",
    "infer_img_s",
    "predict_latency_ms",
    "eval_total_s",
    "eval_forward_s",
    "eval_post_s",
    "reader_img_s",
    "fit_peak_rss_mb",
    "conv_gflops",
    "model_gflop_forward",
    "model_gflop_train",
    "train_fraction_of_conv_peak",
    "infer_fraction_of_conv_peak",
]


def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    process = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    result = json.loads(out.read_text())
    for side in ("detkit", "tutorial"):
        for key in FIGURES:
            value = result[side][key]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (side, key, value)
    # The documented list and the script's own agree.
    assert sorted(result["figures"]) == sorted(FIGURES)
    assert result["settings"]["quick"] is True
    # The network's cost comes from its layers: a training step costs about 3 forward passes.
    d = result["detkit"]
    assert 2.5 < d["model_gflop_train"] / d["model_gflop_forward"] <= 3
    assert math.isclose(d["model_gflop_forward"], result["tutorial"]["model_gflop_forward"], rel_tol=1e-6)
    # The table names each side.
    assert "detkit" in process.stdout and "tutorial" in process.stdout
