#!/bin/bash
# GPU session driver: ASC-10 grids on the H200 (not committed; the commands it runs are recorded in the results).
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
[ -n "$LOCAL" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p ../shared/data && ln -sfn "$PWD/.asc/arabic_sc" ../shared/data/arabic_sc
[ -n "$LOCAL" ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchaudio, soundfile, pedalboard; print(torch.__version__, torchaudio.__version__, torch.cuda.is_available())" || exit 4
mkdir -p .gpuwork/logs
D=../shared/data/arabic_sc
MAIN="--data $D --vocab asc10 --models smallcnn,resnet --attacks badnets,blend,jingleback,ultrasonic,pbsm,piba,daba --variant gnft_best=gnft:clean_ratio=0.1,r=0.1,lr=0.01,epochs=60 --variant rec_c05=gnft@recommended:clean_ratio=0.05 --defenses none,ft,fp,gnft@paper,gnft_best,gnft@recommended,ftsam,clp,rec_c05 --defense-seeds 0,1 --device ${DEV:-cuda} --threads 1 --work .gpuwork/asc10 --out .gpuwork/grid_asc10_h200"
ABL="--data $D --vocab asc10 --models resnet --attacks badnets --no-clean --reuse .gpuwork/asc10/train_{model}_{attack}.safetensors"
for c in 02 05 10 20; do ABL="$ABL --variant gnft_c$c=gnft:clean_ratio=0.$c,r=0.1,lr=0.01,epochs=60 --variant ft_c$c=ft:clean_ratio=0.$c,lr=0.01,epochs=60"; COLS="$COLS,gnft_c$c,ft_c$c"; done
for a in 3 5 7 9; do for r in 02 05 10 20; do ABL="$ABL --variant gnft_a${a}_r$r=gnft:clean_ratio=0.1,alpha=0.$a,r=0.$r,lr=0.01,epochs=60"; COLS="$COLS,gnft_a${a}_r$r"; done; done
ABL="$ABL --defenses none$COLS --defense-seeds 0,1 --device ${DEV:-cuda} --threads 1 --work .gpuwork/abl --out .gpuwork/grid_asc10_ablation_resnet_h200"
ARCH="--data $D --vocab asc10 --models largecnn,smalllstm,lstm_attention,rnn --attacks badnets --variant gnft_best=gnft:clean_ratio=0.1,r=0.1,lr=0.01,epochs=60 --defenses none,ft,fp,gnft@paper,gnft_best,gnft@recommended --defense-seeds 0,1 --device ${DEV:-cuda} --threads 1 --work .gpuwork/archs --out .gpuwork/grid_asc10_archs_h200"
echo "MAIN: python -m core.grid $MAIN" > .gpuwork/commands.txt
echo "ABL: python -m core.grid $ABL" >> .gpuwork/commands.txt
echo "ARCH: python -m core.grid $ARCH" >> .gpuwork/commands.txt
DEADLINE=${DEADLINE:-470}
setsid python3 -m core.grid $MAIN --jobs 8 --quiet > .gpuwork/logs/main.log 2>&1 &
PM=$!
( while [ ! -f .gpuwork/asc10/train_resnet_badnets.json ] && [ $(el) -lt $((DEADLINE - 60)) ]; do sleep 5; done
  echo "ablation starts at $(el) s"
  [ $(el) -lt $((DEADLINE - 60)) ] && exec setsid python3 -m core.grid $ABL --jobs 3 --quiet > .gpuwork/logs/abl.log 2>&1 ) &
PA=$!
sleep 20
setsid python3 -m core.grid $ARCH --jobs 3 --quiet > .gpuwork/logs/arch.log 2>&1 &
PR=$!
( while kill -0 $PM 2>/dev/null; do sleep 30; echo "t=$(el) cells: $(ls .gpuwork/asc10/defend_*.json 2>/dev/null | wc -l) main, $(ls .gpuwork/abl/defend_*.json 2>/dev/null | wc -l) abl, $(ls .gpuwork/archs/defend_*.json 2>/dev/null | wc -l) arch; gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"; done ) &
( while [ $(el) -lt $DEADLINE ] && { kill -0 $PM || kill -0 $PA || kill -0 $PR; } 2>/dev/null; do sleep 2; done
  echo "deadline or all done at $(el) s"; for p in $PM $PA $PR; do kill -INT -- -$p 2>/dev/null; done
  sleep 20; for p in $PM $PA $PR; do kill -9 -- -$p 2>/dev/null; done ) &
wait $PM; echo "main rc=$? at $(el) s"; wait $PA; echo "abl done at $(el) s"; wait $PR; echo "arch rc=$? at $(el) s"
pkill -INT -f "core.grid"; sleep 2; pkill -9 -f "core.grid"; sleep 1
# tabulate whatever finished (these do no work)
python3 -m core.grid $MAIN --no-train --no-defend --quiet > .gpuwork/logs/main_tab.log 2>&1 &
python3 -m core.grid $ABL --no-train --no-defend --quiet > .gpuwork/logs/abl_tab.log 2>&1 &
python3 -m core.grid $ARCH --no-train --no-defend --quiet > .gpuwork/logs/arch_tab.log 2>&1 &
wait; echo "tabulated at $(el) s"
for f in .gpuwork/logs/*.log; do echo "== $f"; tail -n 6 $f; done
tar czf $OUT/results.tgz .gpuwork/*.json .gpuwork/*.md .gpuwork/commands.txt .gpuwork/logs $(ls .gpuwork/*/*.json) 2>/dev/null
tar czf $OUT/models_resnet.tgz .gpuwork/asc10/train_resnet_*.safetensors .gpuwork/asc10/scan_*resnet*.safetensors 2>/dev/null
tar czf $OUT/models_smallcnn.tgz .gpuwork/asc10/train_smallcnn_*.safetensors .gpuwork/asc10/scan_*smallcnn*.safetensors 2>/dev/null
tar czf $OUT/models_archs.tgz $(ls .gpuwork/archs/train_*.safetensors | grep -v largecnn) 2>/dev/null
ls -la $OUT; echo "end at $(el) s"
