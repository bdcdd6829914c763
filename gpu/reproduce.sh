#!/usr/bin/env bash
# The paper-setting run on one rented GPU (make reproduce PROFILE=gpu), from what `make gpu-bundle`
# put in the git-ignored .gpu/: faiss's wheel (the GPU image lacks it), the dataset and its item
# embeddings (embedded here on the CPU, so the rental spends no time on them). On the device:
#   run(command="bash gpu/reproduce.sh", carry=[".gpu"], timeout_s=600)
# Results come back as $OUT/results.tgz (results/<dataset>/<model>-gpu.json and .ranks.npy) and $OUT/log.
# A smoke test of the bundle here: PYTHON=.venv/bin/python DEVICE=cpu ARGS="--models most-popular" bash gpu/reproduce.sh
set -euo pipefail
cd "$(dirname "$0")/.."
test -d .gpu/wheels && test -d .gpu/data || { echo "no .gpu/ bundle: run make gpu-bundle DATASET=<folder> first" >&2; exit 2; }
py="${PYTHON:-python3}"  # the image's python3 holds torch
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
mkdir -p .cache/embeddings && cp .gpu/embeddings/*.npy .cache/embeddings/
out="${OUT:-runs/gpu}"
mkdir -p "$out"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } | tee "$out/log" || true
data=$(find .gpu/data -mindepth 1 -maxdepth 1 -type d | head -n 1)
status=0
"$py" -m handbook.experiment "$data" --profile gpu --device "${DEVICE:-cuda}" --no-progress --out "$out/results" ${ARGS:-} 2>&1 | tee -a "$out/log" || status=$?
tar czf "$out/results.tgz" -C "$out/results" . && rm -rf "$out/results"
exit "$status"
