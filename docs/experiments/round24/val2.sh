#!/bin/bash
# Usage: runs/q24/val2.sh SEED ATTACK SHARE [TARGET] [DEFENSE_SEED]
# Round 24, validation: today's Recommended (rec) against the same with the trigger searched again every 40 epochs
# (rf40: unlearn_refresh=40) on a round-22 SmallCNN whose scan at SHARE flags its class; one grid, one scan.
set -e
cd ${CODE:-/work/wt-run}
s=$1; a=$2; c=$3; t=$4; d=${5:-0}
old=c05_v${s}_$a; extra=()
if [ -n "$t" ]; then old=c05_v${s}t${t}_$a; extra=(--attack-arg $a.target=$t); fi
work=/work/main/runs/j/v24_${old#c05_}_c${c}_s${d}_rf
mkdir -p $work
cp -n /work/main/runs/j/$old/train_smallcnn_$a.* $work/
exec .venv/bin/python -m core.grid --data ../shared/data/arabic_sc --vocab asc10 --models smallcnn --attacks $a \
  --seed $s "${extra[@]}" --no-clean --defense-seeds $d --eval-split validation --device cpu --threads 1 --quiet \
  --defenses none,rec,rf40 --variant rec=gnft@recommended:clean_ratio=$c \
  --variant rf40=gnft@recommended:clean_ratio=$c,unlearn_refresh=40 \
  --work $work --out $work/grid > /work/main/runs/q24/$(basename $work).log 2>&1
