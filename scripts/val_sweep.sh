#!/usr/bin/env bash
# Validation sweep: chooses compress's schedule, its timing (masks from 0.3 epochs and at the target by 40%
# of training: "early") and the epoch split (2 + 1 after surgery: "ft1") on splits carved from Fashion-MNIST's
# training images (fmnist-val: 10,000 held-out training images; fmnist-open-val: train on classes 0-2,
# retrieve among classes 3-4), never on the test queries. Same budget as scripts/seed_study5.sh: ResNet-18
# teacher 6 epochs on 3,000 images, every method 3 epochs on 3,000 images drawn by the seed, 2,000 queries,
# KD for every method; Taylor pruning as the reference. Runs holding a report.json are kept (resumable);
# ROWS="taylor cdd-taylor-early" runs those rows only. The timing of every row is pinned, so a row keeps its
# meaning when the default changes. The taylor schedule's rows (first-order Taylor ranking of the compactor
# rows) and a higher per-layer floor (floor: 22% at 10% of the FLOPs, 30% at 25%; widths held nearer uniform)
# were added after the timing was chosen, then the uniform allocation (every layer loses the same fraction,
# as Torch-Pruning's local pruning the baselines use) with the retrieval and taylor schedules, and per-channel
# scales in place of the dense internal compactors (a cheaper training step), then the taylor schedule at the
# target from its first update (after 0.1 or 0.3 epochs: a ranking measured on the teacher's own weights, the
# rest of training at the final widths, as Taylor pruning spends it). A longer budget at 10% of the FLOPs (rows
# ending in -e9: 9 epochs; the unseen-classes recipe 8 + its fine-tuning epoch): each protocol's recipe, the same
# without CDD's block loss (-nofeat: --feature-weight 0) and Taylor pruning; run with TEACHER_EPOCHS=30 (a teacher
# trained to convergence) into their own runs root.
# Aggregate: python -m capdist.benchmarks.seed_table runs/bench/val docs/benchmarks/val-sweep
set -euo pipefail
R=${R:-runs/bench/val}
PY=${PY:-python}
SEEDS=${SEEDS:-"0 1 2"}
TARGETS=${TARGETS:-"25 10"}
LATE="--mask-warmup 1 --mask-until 0.6"  # the timing the default had before this sweep chose EARLY
EARLY="--mask-warmup 0.3 --mask-until 0.4"
AT01="--mask-warmup 0.1 --mask-until 0"  # the target at the first update, after 0.1 epochs
AT03="--mask-warmup 0.3 --mask-until 0"
DENSE="--internal-compactor dense"  # the default, pinned where a row compares other settings
source "$(dirname "$0")/study_lib.sh"
for target in $TARGETS; do
for data in fmnist-open-val fmnist-val; do
  T=$(teacher "$data")
  common=(--data "$data" --train-subset 3000 --test-subset 2000 --target-flops "$(printf '0.%02d' "$target")")
  C="$R/$data-$target"
  for seed in $SEEDS; do
    for schedule in retrieval contribution norm; do
      want "cdd-$schedule" && run "$C/cdd-$schedule-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 \
          --schedule "$schedule" $LATE $DENSE --seed "$seed"
    done
    for schedule in retrieval contribution; do
      want "cdd-$schedule-ft1" && run "$C/cdd-$schedule-ft1-seed$seed" compress --teacher "$T" "${common[@]}" \
          --epochs 2 --finetune-epochs 1 --schedule "$schedule" $LATE $DENSE --seed "$seed"
    done
    for schedule in retrieval contribution taylor; do
      want "cdd-$schedule-early" && run "$C/cdd-$schedule-early-seed$seed" compress --teacher "$T" "${common[@]}" \
          --epochs 3 $EARLY $DENSE --schedule "$schedule" --seed "$seed"
    done
    floor=$([ "$target" = 10 ] && echo 22 || echo 30)  # a 30% floor cannot reach 10% of the FLOPs (lowest 0.149)
    want cdd-retrieval-floor && run "$C/cdd-retrieval-floor$floor-seed$seed" compress --teacher "$T" "${common[@]}" \
        --epochs 3 $EARLY $DENSE --schedule retrieval --min-ratio "0.$floor" --seed "$seed"
    for schedule in retrieval taylor; do
      want "cdd-$schedule-uniform" && run "$C/cdd-$schedule-uniform-seed$seed" compress --teacher "$T" "${common[@]}" \
          --epochs 3 $EARLY $DENSE --schedule "$schedule" --allocation uniform --seed "$seed"
    done
    want cdd-retrieval-diagonal && run "$C/cdd-retrieval-diagonal-seed$seed" compress --teacher "$T" "${common[@]}" \
        --epochs 3 $EARLY --schedule retrieval --internal-compactor diagonal --seed "$seed"
    want cdd-taylor-at01 && run "$C/cdd-taylor-at01-seed$seed" compress --teacher "$T" "${common[@]}" \
        --epochs 3 $AT01 $DENSE --schedule taylor --seed "$seed"
    want cdd-taylor-at03 && run "$C/cdd-taylor-at03-seed$seed" compress --teacher "$T" "${common[@]}" \
        --epochs 3 $AT03 $DENSE --schedule taylor --seed "$seed"
    if [ "$target" = 10 ]; then
      recipe=$([ "$data" = fmnist-val ] && echo closed-set || echo unseen-classes)
      epochs=$([ "$data" = fmnist-val ] && echo 9 || echo 8)
      want "cdd-$recipe-e9" && run "$C/cdd-$recipe-e9-seed$seed" compress --config "recipes/cdd-$recipe.yaml" \
          --teacher "$T" "${common[@]}" --epochs "$epochs" --seed "$seed"
      want "cdd-$recipe-e9-nofeat" && run "$C/cdd-$recipe-e9-nofeat-seed$seed" compress \
          --config "recipes/cdd-$recipe.yaml" --teacher "$T" "${common[@]}" --epochs "$epochs" --feature-weight 0 \
          --seed "$seed"
      want taylor-e9 && run "$C/taylor-e9-seed$seed" prune --model "$T" "${common[@]}" --method taylor \
          --finetune-epochs 9 --lr 0.1 --seed "$seed"
    fi
    want taylor && run "$C/taylor-seed$seed" prune --model "$T" "${common[@]}" --method taylor --finetune-epochs 3 \
        --lr 0.1 --seed "$seed"
  done
done
done
exit 0  # the last row filtered out by ROWS would otherwise leave the loop status 1
