#!/usr/bin/env bash
# Probe of the retrieval schedules and of cross_nce on unseen classes (fmnist-open), the seed study's
# sizes (ResNet-18 teacher 6 epochs on 3,000 images; 3 epochs per method; 2,000 queries):
#  - how much of the target's reduction retrieval guidance makes: RGGR as shipped, RGGR with the
#    authors' search (recipes/cdd-paper.yaml: teacher-ranked, k=2, every step, bank 24,000, internal
#    compactors, no floor), and the contribution schedule, at 25% and 10% of the FLOPs, seed 0;
#  - --gallery teacher at 25%, cross_nce with the other images of a query's identity as negatives
#    (the default), left out, or positives; seeds 0-2 (asymmetric mAP).
# Summary: capdist report runs/bench/probe/open-25/* --out DIR (mAP, FLOPs); the share retrieval guidance
# made is each report.json's "rggr" field (share_of_target).
set -euo pipefail
R=${R:-runs/bench/probe}
PY=${PY:-python}
run() { local out=$1; shift; [ -f "$out/report.json" ] && return 0; echo "$(date +%T) $out"; "$PY" -m capdist "$@" --out "$out" --overwrite --quiet > /dev/null; }
T="$R/teacher-fmnist-open"
[ -f "$T/model.safetensors" ] || "$PY" -m capdist train --model resnet18 --data fmnist-open --train-subset 3000 \
    --epochs 6 --lr 0.05 --quiet --out "$T" --overwrite > /dev/null
for target in 25 10; do
  f=$(printf '0.%02d' "$target")
  cdd=(compress --teacher "$T" --data fmnist-open --train-subset 3000 --test-subset 2000 --target-flops "$f"
       --epochs 3 --mask-warmup 0.5 --mask-until 0.4 --seed 0)
  run "$R/open-$target/rggr-default" "${cdd[@]}"
  run "$R/open-$target/rggr-paper" "${cdd[@]}" --config recipes/cdd-paper.yaml
  run "$R/open-$target/contribution" "${cdd[@]}" --schedule contribution
done
for seed in 0 1 2; do
  g=(compress --teacher "$T" --data fmnist-open --train-subset 3000 --test-subset 2000 --target-flops 0.25
     --epochs 3 --mask-warmup 0.5 --mask-until 0.4 --schedule norm --gallery teacher --seed "$seed")
  for same in negative excluded positive; do
    run "$R/open-25/gallery-teacher-$same-seed$seed" "${g[@]}" --cross-nce-same-label "$same"
  done
done
