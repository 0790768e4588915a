#!/usr/bin/env bash
# Ablation on the standard study's closed-set teacher, same sizes and CDD settings as
# `capdist bench fmnist --profile standard` (3,000 training images, 3 epochs, 2,000 queries):
# at 35% FLOPs, scope internal vs all and the KD extras; at 10%, CDD's purely global ranking
# (--min-ratio 0) against the default per-layer floor (--min-ratio 0.2).
set -euo pipefail
T=runs/bench/standard/teacher-fmnist
A=runs/bench/standard/ablation
S=runs/bench/standard/fmnist
common=(--teacher "$T" --data fmnist --train-subset 3000 --test-subset 2000 --epochs 3 --lr 0.01
        --mask-warmup 0.5 --mask-until 0.4 --overwrite)
python -m capdist compress "${common[@]}" --target-flops 0.35 --schedule retrieval --scope internal \
    --out "$A/cdd-retrieval-internal-35"
python -m capdist compress "${common[@]}" --target-flops 0.35 --schedule norm --scope internal \
    --out "$A/cdd-norm-internal-35"
python -m capdist compress "${common[@]}" --target-flops 0.35 --schedule norm --scope all \
    --distill "rkd_distance:25,emb_cosine:1" --out "$A/cdd-norm-kd-extras-35"
python -m capdist compress "${common[@]}" --target-flops 0.10 --schedule norm --scope all --min-ratio 0 \
    --out "$A/cdd-norm-min-ratio-0-10"
python -m capdist compress "${common[@]}" --target-flops 0.10 --schedule retrieval --scope all --min-ratio 0 \
    --out "$A/cdd-retrieval-min-ratio-0-10"
python -m capdist report "$S/cdd-retrieval-35" "$S/cdd-norm-35" "$A/cdd-retrieval-internal-35" \
    "$A/cdd-norm-internal-35" "$A/cdd-norm-kd-extras-35" \
    --out docs/benchmarks/fmnist-standard/ablation-35
python -m capdist report "$S/cdd-retrieval-10" "$S/cdd-norm-10" "$A/cdd-norm-min-ratio-0-10" \
    "$A/cdd-retrieval-min-ratio-0-10" --out docs/benchmarks/fmnist-standard/ablation-10
# Open set at 25%: can embedding-level terms make student queries compatible with the teacher's gallery?
O=runs/bench/standard/fmnist-open
open_common=(--teacher runs/bench/standard/teacher-fmnist-open --data fmnist-open --train-subset 3000
             --test-subset 2000 --epochs 3 --lr 0.01 --mask-warmup 0.5 --mask-until 0.4 --overwrite
             --target-flops 0.25 --schedule retrieval --scope all)
python -m capdist compress "${open_common[@]}" --distill "emb_cosine:1" --out "$A/open-cdd-retrieval-emb-cosine-25"
python -m capdist compress "${open_common[@]}" --distill "emb_mse:1" --out "$A/open-cdd-retrieval-emb-mse-25"
python -m capdist report "$O/cdd-retrieval-25" "$O/cdd-norm-25" "$A/open-cdd-retrieval-emb-cosine-25" \
    "$A/open-cdd-retrieval-emb-mse-25" --out docs/benchmarks/fmnist-standard/ablation-open-25
# Open set at 10%: the per-layer floor against CDD's purely global ranking.
open10=("${open_common[@]/0.25/0.10}")
python -m capdist compress "${open10[@]}" --min-ratio 0 --out "$A/open-cdd-retrieval-min-ratio-0-10"
python -m capdist compress "${open10[@]/retrieval/norm}" --min-ratio 0 --out "$A/open-cdd-norm-min-ratio-0-10"
python -m capdist report "$O/cdd-retrieval-10" "$O/cdd-norm-10" "$A/open-cdd-retrieval-min-ratio-0-10" \
    "$A/open-cdd-norm-min-ratio-0-10" --out docs/benchmarks/fmnist-standard/ablation-open-10
# Latency at 10%: widths rounded to multiples of 8 against free widths, timed side by side.
python -m capdist compress "${common[@]}" --target-flops 0.10 --schedule norm --scope all --round-to 8 \
    --out "$A/cdd-norm-round-to-8-10"
python -m capdist report "$S/cdd-norm-10" "$A/cdd-norm-round-to-8-10" "$S/magnitude-10" "$S/taylor-10" \
    --retime "$T" --rounds 9 --out docs/benchmarks/fmnist-standard/latency-10
