#!/usr/bin/env bash
# Five-seed study: Fashion-MNIST closed set and open set (unseen classes) at 25% and 10% of the
# FLOPs, seeds 0-4 (the seed also draws the 3,000 training images), ResNet-18 teacher 6 epochs, every
# method 3 epochs at the same learning rate as applied (compress --lr 0.01; prune --lr 0.1, which
# fine-tunes at a tenth of it), KD for every method, 2,000 test queries. Methods: compress with every
# default (retrieval-guided schedule, masks from 0.3 epochs and at the target by 40% of training, chosen on
# the validation splits by scripts/val_sweep.sh), the same with the earlier default timing (masks from epoch 1,
# at the target by 60%: "late"), compress --schedule contribution (late timing), compress with the CDD paper's
# objective and search (recipes/cdd-paper.yaml), compress --schedule taylor (masks ranked by first-order Taylor
# importance, early timing), magnitude and Taylor pruning, and Taylor (the best
# baseline of most cells) with CDD's block loss on the same eight blocks (cdd_block on each basic block's conv1 + BN, where CDD takes
# it; each projected to the teacher's width).
# On unseen classes at 25%, compress --gallery teacher (queries that must match the teacher's gallery; judged by
# asymmetric mAP), with the default compactors and with per-channel scales, against magnitude and Taylor pruning
# fine-tuned with the same --gallery teacher terms (KD and cross_nce); cdd-diagonal: the default with
# per-channel-scale internal compactors (a cheaper step); cdd-taylor-uniform: the taylor schedule with every layer
# losing the same fraction (--allocation uniform), the closest to Taylor pruning on the closed validation set.
# Each protocol's best row on its own validation cells (scripts/val_sweep.sh, mean gap to Taylor over the two
# targets): cdd-taylor-at01 (closed set: the taylor schedule at the target from its first update, after 0.1
# epochs; recipes/cdd-closed-set.yaml), run in every cell; cdd-contribution-ft1 (unseen classes: the
# contribution schedule, late timing, 2 epochs + 1 after surgery), run in the unseen-class cells.
# A longer budget at 10% of the FLOPs (rows ending in -e9: 9 epochs for every method; the unseen-classes recipe
# 8 + its fine-tuning epoch): the default, the protocol's recipe and Taylor pruning + KD, judged against
# Taylor at the same budget; -e9-nofeat: the recipe without CDD's block loss (--feature-weight 0). With
# TEACHER_EPOCHS=30 (a teacher trained to convergence) into its own runs root. STUDY_DATA="fmnist" runs one protocol.
# Runs that hold a report.json are kept, so an interrupted study resumes; ROWS="cdd-taylor taylor" runs those
# rows only.
# Aggregate: python -m capdist.benchmarks.seed_table runs/bench/seeds5 docs/benchmarks/seeds5-fmnist
set -euo pipefail
R=${R:-runs/bench/seeds5}
PY=${PY:-python}
SEEDS=${SEEDS:-"0 1 2 3 4"}
TARGETS=${TARGETS:-"25 10"}
LATE="--mask-warmup 1 --mask-until 0.6"
EARLY="--mask-warmup 0.3 --mask-until 0.4"
DENSE="--internal-compactor dense"  # the default, pinned in the rows that compare other settings
DIAGONAL="--internal-compactor diagonal"
AT01="--mask-warmup 0.1 --mask-until 0"
BLOCKS="cdd_block:0.5@$(printf 'backbone.layer%s.bn1+' 1.0 1.1 2.0 2.1 3.0 3.1 4.0 4.1 | sed 's/+$//')"
source "$(dirname "$0")/study_lib.sh"
for target in $TARGETS; do
for data in ${STUDY_DATA:-fmnist-open fmnist}; do
  T=$(teacher "$data")
  common=(--data "$data" --train-subset 3000 --test-subset 2000 --target-flops "$(printf '0.%02d' "$target")")
  C="$R/$data-$target"
  for seed in $SEEDS; do
    want cdd-default && run "$C/cdd-default-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 --seed "$seed"
    [ "$data-$target" = fmnist-open-25 ] && want cdd-gallery-teacher && run "$C/cdd-gallery-teacher-seed$seed" \
        compress --teacher "$T" "${common[@]}" --epochs 3 --gallery teacher --seed "$seed"
    [ "$data-$target" = fmnist-open-25 ] && want cdd-diagonal-gallery-teacher && \
        run "$C/cdd-diagonal-gallery-teacher-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 $DIAGONAL \
        --gallery teacher --seed "$seed"
    want cdd-diagonal && run "$C/cdd-diagonal-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 $DIAGONAL \
        --seed "$seed"
    want cdd-late && run "$C/cdd-late-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 $LATE $DENSE \
        --seed "$seed"
    want cdd-contribution && run "$C/cdd-contribution-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 \
        --schedule contribution $LATE $DENSE --seed "$seed"
    want cdd-taylor && run "$C/cdd-taylor-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 \
        --schedule taylor $EARLY $DENSE --seed "$seed"
    want cdd-taylor-uniform && run "$C/cdd-taylor-uniform-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 \
        --schedule taylor --allocation uniform $EARLY $DENSE --seed "$seed"
    want cdd-taylor-at01 && run "$C/cdd-taylor-at01-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 3 \
        --schedule taylor $AT01 $DENSE --seed "$seed"
    [ "$data" = fmnist-open ] && want cdd-contribution-ft1 && run "$C/cdd-contribution-ft1-seed$seed" compress \
        --teacher "$T" "${common[@]}" --epochs 2 --finetune-epochs 1 --schedule contribution $LATE $DENSE --seed "$seed"
    want cdd-paper && run "$C/cdd-paper-seed$seed" compress --config recipes/cdd-paper.yaml --teacher "$T" \
        "${common[@]}" --epochs 3 --seed "$seed"
    for method in magnitude taylor; do
      want "$method" && run "$C/$method-seed$seed" prune --model "$T" "${common[@]}" --method "$method" \
          --finetune-epochs 3 --lr 0.1 --seed "$seed"
    done
    for method in magnitude taylor; do
      [ "$data-$target" = fmnist-open-25 ] && want "$method-gallery-teacher" && \
          run "$C/$method-gallery-teacher-seed$seed" prune --model "$T" "${common[@]}" --method "$method" \
          --finetune-epochs 3 --lr 0.1 --gallery teacher --seed "$seed"
    done
    if [ "$target" = 10 ]; then
      want cdd-default-e9 && run "$C/cdd-default-e9-seed$seed" compress --teacher "$T" "${common[@]}" --epochs 9 \
          --seed "$seed"
      recipe=$([ "$data" = fmnist ] && echo closed-set || echo unseen-classes)
      epochs=$([ "$data" = fmnist ] && echo 9 || echo 8)
      want "cdd-$recipe-e9" && run "$C/cdd-$recipe-e9-seed$seed" compress --config "recipes/cdd-$recipe.yaml" \
          --teacher "$T" "${common[@]}" --epochs "$epochs" --seed "$seed"
      want "cdd-$recipe-e9-nofeat" && run "$C/cdd-$recipe-e9-nofeat-seed$seed" compress \
          --config "recipes/cdd-$recipe.yaml" --teacher "$T" "${common[@]}" --epochs "$epochs" --feature-weight 0 \
          --seed "$seed"
      want taylor-e9 && run "$C/taylor-e9-seed$seed" prune --model "$T" "${common[@]}" --method taylor \
          --finetune-epochs 9 --lr 0.1 --seed "$seed"
    fi
    want taylor-block && run "$C/taylor-block-seed$seed" prune --model "$T" "${common[@]}" --method taylor \
        --finetune-epochs 3 --lr 0.1 --distill "$BLOCKS" --seed "$seed"
  done
done
done
exit 0  # the last row filtered out by ROWS would otherwise leave the loop status 1
