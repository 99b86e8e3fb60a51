#!/bin/bash
# Usage: runs/q24/val.sh NAME SETTINGS SEED ATTACK SHARE [TARGET] [DEFENSE_SEED]
# Round 24, validation: gnft@recommended:clean_ratio=SHARE,SETTINGS (variant NAME) on a round-22 SmallCNN
# (runs/j/c05_v<SEED>[t<TARGET>]_<ATTACK>), the scan at the repair's share; one work folder per variant, the model,
# its evaluation and scan copied from round 23's validation folder when there is one. Code in /work/wt-run.
set -e
cd ${CODE:-/work/wt-run}
n=$1; set_=$2; s=$3; a=$4; c=$5; t=$6; d=${7:-0}
old=c05_v${s}_$a; extra=()
if [ -n "$t" ]; then old=c05_v${s}t${t}_$a; extra=(--attack-arg $a.target=$t); fi
work=/work/main/runs/j/v24_${old#c05_}_c${c}_s${d}_$n
mkdir -p $work
cp -n /work/main/runs/j/$old/train_smallcnn_$a.* $work/
exec .venv/bin/python -m core.grid --data ../shared/data/arabic_sc --vocab asc10 --models smallcnn --attacks $a \
  --seed $s "${extra[@]}" --no-clean --defense-seeds $d --eval-split validation --device cpu --threads 1 --quiet \
  --defenses none,$n --variant $n=gnft@recommended:clean_ratio=$c${set_:+,$set_} \
  --work $work --out $work/grid > /work/main/runs/q24/$(basename $work).log 2>&1
