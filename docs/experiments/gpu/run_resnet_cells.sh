#!/bin/bash
# GPU session driver, second call: the ResNet defense cells of the ASC-10 grid (models trained by the first call).
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p ../shared/data && ln -sfn "$PWD/.asc/arabic_sc" ../shared/data/arabic_sc
mkdir -p .gpuwork/logs
D=../shared/data/arabic_sc
BASE="--data $D --vocab asc10 --models resnet --attacks badnets,blend,jingleback,ultrasonic,pbsm,piba,daba --no-clean --no-train --defense-seeds 0,1 --device cuda --threads 1 --work .gpuwork/asc10"
A="$BASE --variant rec_c05=gnft@recommended:clean_ratio=0.05 --defenses none,gnft@recommended,rec_c05 --out .gpuwork/grid_resnet_a"
B="$BASE --variant gnft_best=gnft:clean_ratio=0.1,r=0.1,lr=0.01,epochs=60 --defenses none,ft,fp,gnft@paper,gnft_best,ftsam,clp --out .gpuwork/grid_resnet_b"
echo "A: python -m core.grid $A" > .gpuwork/commands2.txt; echo "B: python -m core.grid $B" >> .gpuwork/commands2.txt
DEADLINE=${DEADLINE:-360}
setsid python3 -m core.grid $A --jobs 10 --quiet > .gpuwork/logs/resnet_a.log 2>&1 &
PA=$!
setsid python3 -m core.grid $B --jobs 6 --quiet > .gpuwork/logs/resnet_b.log 2>&1 &
PB=$!
( while kill -0 $PA 2>/dev/null || kill -0 $PB 2>/dev/null; do sleep 30; echo "t=$(el) cells: $(ls .gpuwork/asc10/defend_*.json 2>/dev/null | wc -l), scans $(ls .gpuwork/asc10/scan_*.json 2>/dev/null | wc -l); gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"; done ) &
( while [ $(el) -lt $DEADLINE ] && { kill -0 $PA || kill -0 $PB; } 2>/dev/null; do sleep 2; done
  echo "deadline or all done at $(el) s"; for p in $PA $PB; do kill -INT -- -$p 2>/dev/null; done
  sleep 15; for p in $PA $PB; do kill -9 -- -$p 2>/dev/null; done ) &
wait $PA; echo "A rc=$? at $(el) s"; wait $PB; echo "B rc=$? at $(el) s"
pkill -9 -f "core.grid"; sleep 1
for f in .gpuwork/logs/*.log; do echo "== $f"; grep -v Warning $f | tail -n 8; done
tar czf $OUT/results2.tgz .gpuwork/commands2.txt .gpuwork/logs $(ls .gpuwork/asc10/*.json) $(ls .gpuwork/asc10/scan_*.safetensors 2>/dev/null)
ls -la $OUT; echo "end at $(el) s"
