#!/usr/bin/env bash
# The seed-averaged study (issue 12, item 4): Fashion-MNIST closed set and open set (unseen
# classes), 10% and 25% of the FLOPs, seeds 0-2 per cell, the standard study's sizes (ResNet-18,
# 3,000 training images, 3 epochs after a 6-epoch teacher, 2,000 queries). Per cell: CDD with the
# authors' block loss and the norm schedule, with RGGR (our neighbour search and the authors'),
# magnitude and Taylor pruning with the same losses and epochs; then CDD with the earlier stage loss,
# with per-channel-scale residual compactors (the cheaper training step) and with the authors' RGGR
# search. Open set at 25% adds --gallery teacher for CDD and magnitude pruning (without and with the
# cross-model contrastive term, the "-nce" runs); both 10% cells add the same losses plus cross_nce for
# CDD, magnitude and Taylor, and the open one CDD at the baselines' learning rate. The seed also draws
# the training subset. Residual compactors are dense and the cross-model contrastive term is off here,
# as they were when the study began (--residual-compactor diagonal and --cross-nce 4, now compress's
# defaults, are variants of their own; CDD's "-nce" rows were run with --distill cross_nce:4, the same
# term at the same weight).
# Cells run in order of what they decide (10% first). Runs that already hold a report.json are
# kept, so an interrupted study resumes where it stopped.
# Aggregate: python -m capdist.benchmarks.seed_table runs/bench/seeds docs/benchmarks/seeds-fmnist
set -euo pipefail
R=${R:-runs/bench/seeds}
PY=${PY:-python}
run() { local out=$1; shift; [ -f "$out/report.json" ] && return 0; echo "$(date +%T) $out"; "$PY" -m capdist "$@" --out "$out" --overwrite --quiet > /dev/null; }
teacher() {
  local T="$R/teacher-$1"
  [ -f "$T/model.safetensors" ] || "$PY" -m capdist train --model resnet18 --data "$1" --train-subset 3000 \
      --epochs 6 --lr 0.05 --quiet --out "$T" --overwrite > /dev/null
}
for target in 10 25; do
  for data in fmnist-open fmnist; do
    teacher "$data"
    T="$R/teacher-$data"
    f=$(printf '0.%02d' "$target")
    common=(--data "$data" --train-subset 3000 --test-subset 2000 --target-flops "$f")
    cdd=(compress --teacher "$T" "${common[@]}" --epochs 3 --lr 0.01 --mask-warmup 0.5 --mask-until 0.4 --scope all
         --residual-compactor dense --cross-nce 0)
    C="$R/$data-$target"
    for seed in 0 1 2; do
      run "$C/cdd-norm-seed$seed" "${cdd[@]}" --schedule norm --seed "$seed"
      run "$C/cdd-rggr-ours-seed$seed" "${cdd[@]}" --schedule retrieval --rggr-neighbours student --seed "$seed"
      for method in magnitude taylor; do
        run "$C/$method-seed$seed" prune --model "$T" "${common[@]}" --method "$method" --finetune-epochs 3 \
            --lr 0.1 --seed "$seed"
      done
    done
    for seed in 0 1 2; do
      run "$C/cdd-norm-stage-loss-seed$seed" "${cdd[@]}" --schedule norm --feature-loss stage --seed "$seed"
    done
    for seed in 0 1 2; do
      run "$C/cdd-norm-diagonal-residual-seed$seed" "${cdd[@]}" --schedule norm --residual-compactor diagonal \
          --seed "$seed"
    done
    for seed in 0 1 2; do
      run "$C/cdd-rggr-official-seed$seed" "${cdd[@]}" --schedule retrieval --rggr-neighbours teacher --seed "$seed"
    done
    if [ "$data-$target" = fmnist-open-25 ]; then
      for seed in 0 1 2; do
        # --gallery teacher without and with cross_nce; magnitude's row without it was made at 31b283e
        # (prune --gallery teacher has no switch for it since): `git checkout 31b283e`, same command
        run "$C/cdd-norm-gallery-teacher-seed$seed" "${cdd[@]}" --schedule norm --gallery teacher --seed "$seed"
        run "$C/cdd-norm-nce-seed$seed" "${cdd[@]}" --schedule norm --cross-nce 4 --seed "$seed"
        run "$C/cdd-norm-gallery-teacher-nce-seed$seed" "${cdd[@]}" --schedule norm --gallery teacher --cross-nce 4 \
            --seed "$seed"
        run "$C/magnitude-gallery-teacher-nce-seed$seed" prune --model "$T" "${common[@]}" --method magnitude \
            --finetune-epochs 3 --lr 0.1 --gallery teacher --seed "$seed"
      done
    fi
    if [ "$target" = 10 ]; then
      for seed in 0 1 2; do
        run "$C/cdd-norm-nce-seed$seed" "${cdd[@]}" --schedule norm --cross-nce 4 --seed "$seed"
        for method in magnitude taylor; do
          run "$C/$method-nce-seed$seed" prune --model "$T" "${common[@]}" --method "$method" --finetune-epochs 3 \
              --lr 0.1 --distill cross_nce:4 --seed "$seed"
        done
        [ "$data" = fmnist-open ] && run "$C/cdd-norm-lr0.1-seed$seed" "${cdd[@]}" --schedule norm --lr 0.1 --seed "$seed"
      done
    fi
  done
done
