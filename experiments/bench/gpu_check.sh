#!/usr/bin/env bash
# One prepared GPU session (device tool). Results land in $OUT (or ./gpu_results).
#   part sim:     simulator overhead (sequential chunks vs vmapped waves) and the vmapped sweep
#   part session3: model_parallel (mesh path on one GPU), sim_scale, predictor_clock
#   part runtime: AlexNet b128 plain loop vs runtime with 1 and 4 workers sharing the GPU; runtime scaling
#   part precision: AlexNet b128 float32 vs bfloat16 step, % of the bf16 peak by an analytic FLOP count
set -uo pipefail
OUT=${OUT:-gpu_results}; mkdir -p "$OUT"
PART=${1:-all}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
cd experiments/bench
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
if [ "$PART" = all ] || [ "$PART" = sim ]; then
  timeout 200 python3 sim_overhead.py --strategies=sequential,waves --batch=32 2>&1 | grep -v '^I1' | tee "$OUT/sim_overhead_b32.txt"
  timeout 120 python3 sim_overhead.py --strategies=sequential,waves --batch=128 --models=cifar_18pct:cifar10 2>&1 | grep -v '^I1' | tee "$OUT/sim_overhead_b128.txt"
  timeout 200 python3 sweep.py --quick --models=mlp,small_cnn 2>&1 | grep -v '^I1' | tee "$OUT/sweep.txt"
fi
if [ "$PART" = session3 ]; then  # model parallelism (1 GPU: the mesh path's cost), simulator scale, predictor clock
  timeout 150 python3 model_parallel.py --ways=1 --batch=128 2>&1 | grep -v '^I1' | tee "$OUT/model_parallel_h100.txt"
  timeout 200 python3 sim_scale.py --quick 2>&1 | grep -v '^I1' | tee "$OUT/sim_scale_h100.txt"
  timeout 200 python3 predictor_clock.py --workers=1,2,4 2>&1 | grep -v '^I1' | tee "$OUT/predictor_clock_h100.txt"
fi
if [ "$PART" = all ] || [ "$PART" = runtime ]; then
  timeout 240 python3 gpu_alexnet.py 2>&1 | grep -v '^I1' | tee "$OUT/gpu_alexnet.txt"
  timeout 90 python3 runtime_scaling.py --quick --workers=1,2,4 2>&1 | grep -v '^I1' | tee "$OUT/runtime_scaling.txt"
fi
if [ "$PART" = all ] || [ "$PART" = precision ]; then
  timeout 240 python3 mixed_precision.py --model=alexnet --batch=128 2>&1 | grep -v '^I1' | tee "$OUT/mixed_precision.txt"
fi
