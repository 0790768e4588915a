#!/usr/bin/env bash
# Compatibility with the teacher's gallery on unseen classes (fmnist-open, 25% of the FLOPs):
# default compress vs --gallery teacher, same teacher, data, epochs and seed.
# Usage: scripts/gallery_study.sh [OUT]   (about 10 minutes on 2 cores)
set -euo pipefail
OUT=${1:-runs/gallery-study}
PY=${PY:-.venv/bin/python}
COMMON=(--data fmnist-open --train-subset 8000 --test-subset 2000 --batch-size 64)
[ -f "$OUT/teacher/model.safetensors" ] || \
  $PY -m capdist train --model resnet18 --data fmnist-open --train-subset 8000 --epochs 4 --out "$OUT/teacher" --overwrite
for gallery in own teacher; do
  $PY -m capdist compress --teacher "$OUT/teacher" "${COMMON[@]}" --target-flops 0.25 --epochs 4 \
      --gallery "$gallery" --out "$OUT/cdd25-$gallery" --overwrite > /dev/null
done
$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
for g in ("own", "teacher"):
    r = json.load(open(f"{out}/cdd25-{g}/report.json"))
    t, c = r["models"][0], r["models"][-1]
    print(f"gallery {g:7s}: teacher mAP {100*t['symmetric']['mAP']:.2f}  compressed mAP {100*c['symmetric']['mAP']:.2f}"
          f"  asymmetric (teacher gallery) {100*c['asymmetric']['mAP']:.2f}  FLOPs {r['flops_fraction']:.3f}")
PYEOF
