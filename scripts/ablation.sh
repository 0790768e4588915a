#!/usr/bin/env bash
# Ablation at 35% FLOPs on the standard study's closed-set teacher: schedule, scope, KD extras.
# Same sizes as `capdist bench fmnist --profile standard` (3,000 training images, 3 epochs, 2,000 queries).
set -euo pipefail
T=runs/bench/standard/teacher-fmnist
A=runs/bench/standard/ablation
common=(--teacher "$T" --data fmnist --train-subset 3000 --test-subset 2000 --target-flops 0.35 --epochs 3
        --lr 0.01 --overwrite)
python -m capdist compress "${common[@]}" --schedule retrieval --scope internal --out "$A/cdd-retrieval-internal"
python -m capdist compress "${common[@]}" --schedule norm --scope internal --out "$A/cdd-norm-internal"
python -m capdist compress "${common[@]}" --schedule norm --scope all --distill "rkd_distance:25,emb_cosine:1" \
    --out "$A/cdd-norm-all-kd-extras"
python -m capdist report runs/bench/standard/fmnist/cdd-retrieval-35 runs/bench/standard/fmnist/cdd-norm-35 \
    "$A/cdd-retrieval-internal" "$A/cdd-norm-internal" "$A/cdd-norm-all-kd-extras" \
    --out docs/benchmarks/fmnist-standard/ablation-35
