#!/usr/bin/env bash
# The release, reproducibly: build gluon-detkit's sdist and wheel from this checkout
# (python -m build), check both with `twine check --strict`, install the wheel into a
# fresh virtual environment and run a smoke test there, outside the checkout.
#
#   tools/check_release.sh [PYTHON]      (default: .venv/bin/python; .ci/run runs it)
#
# Cheap on purpose: the fresh environment gets the wheel alone (--no-deps) and sees the
# dependencies already installed in PYTHON's environment through a .pth line (a path
# line only: that environment's own .pth files, the editable install of detkit among
# them, are not processed), so nothing is downloaded or compiled a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-.venv/bin/python}"

"$python" -m pip install --quiet build twine
work="$(mktemp -d "${TMPDIR:-/tmp}/detkit-release.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --no-isolation would use this environment's setuptools; the isolated build uses
# build-system.requires, as a release does.
"$python" -m build --sdist --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
if grep -qE "DeprecationWarning|is deprecated" "$work/build.log"; then
    grep -E -A3 "DeprecationWarning|is deprecated" "$work/build.log"; echo "check_release: the build warns of deprecations" >&2; exit 1
fi
"$python" -m twine check --strict "$work"/dist/*
wheel=("$work"/dist/gluon_detkit-*.whl)

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --no-deps --no-index "${wheel[0]}"
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
site_of "$python" >"$(site_of "$work/venv/bin/python")/release-check-dependencies.pth"

# The smoke test, from an empty folder: the wheel's detkit is the one imported, its
# package data (presets, py.typed) is there, and the command trains and predicts.
cd "$work"
"$work/venv/bin/python" - "$work/venv" <<'EOF'
import sys
from importlib import metadata
from pathlib import Path

import detkit
from detkit.config import preset

venv = Path(sys.argv[1]).resolve()
assert Path(detkit.__file__).resolve().is_relative_to(venv), f"detkit imported from {detkit.__file__}"
assert (Path(detkit.__file__).parent / "py.typed").is_file(), "py.typed is missing from the wheel"
assert detkit.__version__ == metadata.version("gluon-detkit")
assert metadata.metadata("gluon-detkit")["License-Expression"] == "Apache-2.0"
for name in ("seed", "fast", "ssd"):
    preset(name)
print(f"check_release: detkit {detkit.__version__} imports from the wheel")
EOF
"$work/venv/bin/detkit" --version
"$work/venv/bin/detkit" train --preset fast --set data.root=data --set data.num_train=16 --set data.num_val=8 \
    --set data.image_size=64 --set model.data_shape=64 --set train.epochs=1 --set train.warmup_epochs=0 \
    --set train.batch_size=8 --set train.output_dir=run --set train.quiet=true >/dev/null
test -f run/model/detector.yaml && test -f run/metrics.json
echo "check_release: sdist and wheel pass twine check; the wheel installs and trains in a fresh environment"
