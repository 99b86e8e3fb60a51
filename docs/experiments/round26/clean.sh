#!/bin/bash
# Usage: docs/experiments/round26/clean.sh SEED MODEL ATTACK[:TARGET] [ATTACK[:TARGET] ...]
# Round 26, test split: the clean model of each architecture, training seed and rate of today's Recommended table
# (the grid trains it: same recipe, same seed, at 16 kHz and at each attack's rate), beside the table's backdoored
# models of that seed evaluated again (runs/j/c05_v<SEED>[t<TARGET>]_<ATTACK> for a SmallCNN; a ResNet's backdoored
# model is trained again where it is not in the work folder). Work in runs/j/clean_<MODEL>_s<SEED>, resumable.
set -e
cd ${CODE:-/work/main}
s=$1; m=$2; shift 2
work=/work/main/runs/j/clean_${m}_s$s; attacks=(); extra=()
mkdir -p $work
for at in "$@"; do
  a=${at%%:*}; t=${at#*:}; old=c05_v${s}_$a
  if [ "$t" != "$at" ]; then old=c05_v${s}t${t}_$a; extra+=(--attack-arg $a.target=$t); fi
  [ -e /work/main/runs/j/$old/train_${m}_$a.safetensors ] && cp -n /work/main/runs/j/$old/train_${m}_$a.* $work/
  attacks+=($a)
done
exec .venv/bin/python -m core.grid --data ../shared/data/arabic_sc --vocab asc10 --models $m \
  --attacks $(IFS=,; echo "${attacks[*]}") --seed $s "${extra[@]}" --defenses none --eval-split test --device cpu \
  --threads 1 --quiet --work $work --out $work/grid > /work/main/runs/q25/$(basename $work).log 2>&1
