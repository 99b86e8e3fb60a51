#!/bin/bash
# Usage: docs/experiments/round25/val.sh SEED ATTACK SHARE [TARGET] [DEFENSE_SEED]
# Round 25, validation: today's Recommended (rec) against the same searching the trigger again every 40 epochs
# where the scan flagged its class (rfw: unlearn_refresh=40, unlearn_refresh_when=flagged) on a round-22 SmallCNN
# (runs/j/c05_v<SEED>[t<TARGET>]_<ATTACK>); one grid, one scan at the repair's share. Code in $CODE (a worktree).
set -e
cd ${CODE:-/work/wt-run}
s=$1; a=$2; c=$3; t=$4; d=${5:-0}
old=c05_v${s}_$a; extra=()
if [ -n "$t" ]; then old=c05_v${s}t${t}_$a; extra=(--attack-arg $a.target=$t); fi
work=/work/main/runs/j/v25_${old#c05_}_c${c}_s${d}_rfw
mkdir -p $work
cp -n /work/main/runs/j/$old/train_smallcnn_$a.* $work/
exec .venv/bin/python -m core.grid --data ../shared/data/arabic_sc --vocab asc10 --models smallcnn --attacks $a \
  --seed $s "${extra[@]}" --no-clean --defense-seeds $d --eval-split validation --device cpu --threads 1 --quiet \
  --defenses none,rec,rfw --variant rec=gnft@recommended:clean_ratio=$c \
  --variant rfw=gnft@recommended:clean_ratio=$c,unlearn_refresh=40,unlearn_refresh_when=flagged \
  --work $work --out $work/grid > /work/main/runs/q25/$(basename $work).log 2>&1
