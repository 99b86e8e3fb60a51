#!/bin/bash
# Usage: docs/experiments/round25/baselines.sh SEED ATTACK [TARGET]
# Round 25, test split: the baselines (FT, Fine-Pruning, GN-FT at the paper's settings and at its best ASC-10
# setting, FT-SAM, CLP; defense seed 0) on a model of today's Recommended table (runs/j/c05_v<SEED>[t<TARGET>]_<ATTACK>,
# the round-22 SmallCNNs), so that the Recommended stands beside them on the same models.
set -e
cd ${CODE:-/work/main}
s=$1; a=$2; t=$3
old=c05_v${s}_$a; extra=()
if [ -n "$t" ]; then old=c05_v${s}t${t}_$a; extra=(--attack-arg $a.target=$t); fi
work=/work/main/runs/j/base_${old#c05_}
mkdir -p $work
cp -n /work/main/runs/j/$old/train_smallcnn_$a.* $work/
exec .venv/bin/python -m core.grid --data ../shared/data/arabic_sc --vocab asc10 --models smallcnn --attacks $a \
  --seed $s "${extra[@]}" --no-clean --defense-seeds 0 --eval-split test --device cpu --threads 1 --quiet \
  --defenses none,ft,fp,gnft@paper,gnft_best,ftsam,clp --variant gnft_best=gnft:clean_ratio=0.1,r=0.1,lr=0.01,epochs=60 \
  --work $work --out $work/grid > /work/main/runs/q25/$(basename $work).log 2>&1
