#!/bin/bash
# Usage: docs/experiments/round26/val_resnet.sh SEED ATTACK [SHARE] [COLUMNS (default none,rec,rfw)]
# Round 26, validation: today's Recommended (rec) against the same searching the trigger again every 40 epochs
# where the scan flagged its class (rfw: unlearn_refresh=40, unlearn_refresh_when=flagged; rf40: flagged or not) on
# a ResNet of today's Recommended table (trained again in round 26: runs/j/clean_resnet_s<SEED>); one grid, one scan
# at the share.
set -e
cd ${CODE:-/work/main}
s=$1; a=$2; c=${3:-0.1}; columns=${4:-none,rec,rfw}
work=/work/main/runs/j/v26_r${s}_${a}_c$c
mkdir -p $work
cp -n /work/main/runs/j/clean_resnet_s$s/train_resnet_$a.* $work/
declare -A settings=([rec]="" [rf40]=",unlearn_refresh=40" [rfw]=",unlearn_refresh=40,unlearn_refresh_when=flagged")
variants=()
for v in ${columns//,/ }; do
  [ "$v" != none ] && variants+=(--variant "$v=gnft@recommended:clean_ratio=$c${settings[$v]}")
done
exec .venv/bin/python -m core.grid --data ../shared/data/arabic_sc --vocab asc10 --models resnet --attacks $a \
  --seed $s --no-clean --defense-seeds 0 --eval-split validation --device cpu --threads 1 --quiet \
  --defenses $columns "${variants[@]}" \
  --work $work --out $work/grid > /work/main/runs/q25/$(basename $work).log 2>&1
