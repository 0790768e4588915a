#!/usr/bin/env bash
# INT8 and fp16 files of a `--gallery teacher` model, measured as they ship: each file's own mAP and its
# mAP against the float32 teacher's gallery on fmnist-open (2,000 queries), ONNX Runtime and OpenVINO.
# Usage: scripts/deploy_int8.sh RUN_DIR OUT_DIR   (RUN_DIR: e.g. scripts/gallery_study.sh's cdd25-teacher)
set -euo pipefail
RUN=$1
OUT=$2
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
for fmt in onnx openvino; do
  ext=$([ "$fmt" = onnx ] && echo onnx || echo xml)
  for precision in fp32 fp16 int8; do
    $PY -m capdist export "$RUN" --format "$fmt" --precision "$precision" --data fmnist-open --test-subset 2000 \
        --out "$OUT/model.$precision.$ext" | tee "$OUT/model.$precision.$ext.txt"
  done
  $PY -m capdist export "$RUN" --format "$fmt" --precision int8 --calibration-method percentile --data fmnist-open \
      --test-subset 2000 --out "$OUT/model.int8-percentile.$ext" | tee "$OUT/model.int8-percentile.$ext.txt"
done
