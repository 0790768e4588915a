#!/usr/bin/env bash
# Seed-to-seed spread at 10% FLOPs, with the standard study's sizes and settings: seeds 1 and 2 of
# CDD (both schedules) and of magnitude / Taylor pruning, next to the study's seed-0 runs. The seed
# also draws the 3,000-image training subset, so the spread includes which images were seen.
set -euo pipefail
R=runs/bench/standard
for data in fmnist fmnist-open; do
  T="$R/teacher-$data"
  common=(--data "$data" --train-subset 3000 --test-subset 2000 --target-flops 0.10 --overwrite)
  for seed in 1 2; do
    for schedule in norm retrieval; do
      python -m capdist compress --teacher "$T" "${common[@]}" --epochs 3 --lr 0.01 --mask-warmup 0.5 \
          --mask-until 0.4 --schedule "$schedule" --scope all --seed "$seed" \
          --out "$R/seeds/$data/cdd-$schedule-10-seed$seed"
    done
    for method in magnitude taylor; do
      python -m capdist prune --model "$T" "${common[@]}" --method "$method" --finetune-epochs 3 --lr 0.1 \
          --seed "$seed" --out "$R/seeds/$data/$method-10-seed$seed"
    done
  done
  python -m capdist report "$R/$data"/{cdd-norm,cdd-retrieval,magnitude,taylor}-10 "$R/seeds/$data"/*-10-seed* \
      --out "docs/benchmarks/fmnist-standard/seeds-10/$data"
done
