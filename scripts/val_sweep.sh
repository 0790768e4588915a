#!/usr/bin/env bash
# Validation sweep: chooses compress's schedule, its timing (masks from 0.3 epochs and at the target by 40%
# of training: "early") and the epoch split (2 + 1 after surgery: "ft1") on splits carved from Fashion-MNIST's
# training images (fmnist-val: 10,000 held-out training images; fmnist-open-val: train on classes 0-2,
# retrieve among classes 3-4), never on the test queries. Same budget as scripts/seed_study5.sh: ResNet-18
# teacher 6 epochs on 3,000 images, every method 3 epochs on 3,000 images drawn by the seed, 2,000 queries,
# KD for every method; Taylor pruning as the reference. Runs holding a report.json are kept (resumable).
# Aggregate: python -m capdist.benchmarks.seed_table runs/bench/val docs/benchmarks/val-sweep
set -euo pipefail
R=${R:-runs/bench/val}
PY=${PY:-python}
SEEDS=${SEEDS:-"0 1 2"}
TARGETS=${TARGETS:-"25 10"}
source "$(dirname "$0")/study_lib.sh"
for target in $TARGETS; do
for data in fmnist-open-val fmnist-val; do
  T=$(teacher "$data")
  common=(--data "$data" --train-subset 3000 --test-subset 2000 --target-flops "$(printf '0.%02d' "$target")")
  C="$R/$data-$target"
  for seed in $SEEDS; do
    for schedule in retrieval contribution norm; do
      run "$C/cdd-$schedule-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 --schedule "$schedule" \
          --seed "$seed"
    done
    for schedule in retrieval contribution; do
      run "$C/cdd-$schedule-ft1-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 2 --finetune-epochs 1 \
          --schedule "$schedule" --seed "$seed"
      run "$C/cdd-$schedule-early-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 --mask-warmup 0.3 \
          --mask-until 0.4 --schedule "$schedule" --seed "$seed"
    done
    run "$C/taylor-seed$seed" prune --model "$T" "${common[@]}" --method taylor --finetune-epochs 3 --lr 0.1 \
        --seed "$seed"
  done
done
done
