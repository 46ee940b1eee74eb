#!/usr/bin/env bash
# The GPU check: one script, run from the project root on a CUDA machine, about 4-6 minutes.
#   source .device_kit/on_device.sh && bash benchmarks/gpu_check.sh     (offline machine, see ../shared/device/)
#   bash benchmarks/gpu_check.sh                                         (a machine with synthUNet installed)
# Steps: CUDA tests; Dataset501 in a scratch folder; plans for CUDA; the batch pipeline alone (new vs. the old
# batchgenerators pipeline); 100 training steps of 3d_fullres and 2.5d with 8 and 16 data workers next to the
# pure step time (planning.measure); one short training per configuration and a prediction of 2 cases each; one
# BraTS-size case with 1 fold, with 5 folds + TTA (3d_fullres) and with 9 orientations (2.5d).
# Everything goes to one log: $OUT/gpu_check.log when $OUT is set (the device tool's folder), else
# ./gpu_check_<date>.log. Without CUDA it says so and exits with code 3 before doing anything.
# GPU_CHECK_DEVICE=cpu runs every step on the CPU instead, to test the script itself (the figures mean nothing);
# GPU_CHECK_WORKERS (default "8 16"), GPU_CHECK_STEPS (default 100), GPU_CHECK_PURE_STEPS (default 30) and
# GPU_CHECK_CASE_ROWS (default "3d_1 3d_5_tta 25_9", rows of benchmarks/inference_case.py) shrink it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${GPU_CHECK_DEVICE:-cuda}
WORKER_COUNTS=${GPU_CHECK_WORKERS:-8 16}
STEPS=${GPU_CHECK_STEPS:-100}
export GPU_CHECK_PURE_STEPS=${GPU_CHECK_PURE_STEPS:-30}
if [ "$DEVICE" = cuda ] && ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is False): nothing was checked. Run this on a GPU" \
         "machine (documentation/benchmarks.md, 'GPU check')."
    exit 3
fi
LOG="${OUT:-.}/gpu_check$([ -n "${OUT:-}" ] || date +_%Y%m%d_%H%M).log"
exec > >(tee -a "$LOG") 2>&1
SCRATCH=$(mktemp -d /tmp/synthunet_gpu_check.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
export synthUNet_raw=$SCRATCH/raw synthUNet_preprocessed=$SCRATCH/pre synthUNet_results=$SCRATCH/res
CORES=$(nproc)
step() { echo; echo "=== [$(date +%T), ${SECONDS} s] $*"; }

step "machine"
nvidia-smi -L || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
echo "CPU cores: $CORES; git: $(git rev-parse --short HEAD 2>/dev/null || echo n/a)"

step "CUDA tests"
python3 -m pytest -q -p no:cacheprovider -k cuda tests/test_memory_estimate.py tests/test_batch_augmentation.py || true

step "example dataset and plans for $DEVICE"
synth_make_example_dataset -d 501 -np "$CORES" --no_oracle --no_progress
synth_plan_and_preprocess -d 501 --device "$DEVICE" -np "$CORES" --no_progress

step "batch pipeline alone (one worker; augmentation on $DEVICE; old = batchgenerators on the worker)"
python3 benchmarks/train_throughput.py --pipeline --device "$DEVICE" -c 3d_fullres 2.5d --batches 20

step "pure training step (planning.measure: random tensors on the GPU, AMP)"
python3 - <<'PY'
import json, os, statistics
from pathlib import Path
from synthunet.planning.measure import measure_training_step
plans = json.loads(next(Path(os.environ["synthUNet_preprocessed"]).glob("Dataset501_*/synthUNetPlans.json")).read_text())
for name, config in plans["configurations"].items():
    channels = 3 * (config.get("num_slices", 1) if len(config["patch_size"]) == 2 else 1)
    result = measure_training_step(config["architecture"], config["patch_size"], config["batch_size"], channels,
                                   steps=int(os.environ["GPU_CHECK_PURE_STEPS"]),
                                   device=os.environ.get("GPU_CHECK_DEVICE", "cuda"))
    times = result["step_times"][1:][-25:]
    print(f"{name}: patch {config['patch_size']} x {config['batch_size']}, pure step {1000 * statistics.median(times):.1f} ms "
          f"(median of {len(times)}), peak {result['peak_bytes'] / 2**30:.2f} GiB")
PY

for WORKERS in $WORKER_COUNTS; do
    step "synth_train steps with $WORKERS data workers ($STEPS steps after 5 warm-up steps)"
    python3 benchmarks/train_throughput.py --device "$DEVICE" -c 3d_fullres 2.5d --iterations "$STEPS" --warmup 5 \
        --workers "$WORKERS" --json "${OUT:-$SCRATCH}/train_throughput_${WORKERS}.json"
done

step "short training (1 epoch) and prediction of 2 cases per configuration"
python3 - <<'PY'
import os
from pathlib import Path
from synthunet.quickstart import present_brasyn_style
raw = next(Path(os.environ["synthUNet_raw"]).glob("Dataset501_*"))
present_brasyn_style(raw, ["Phantom_000", "Phantom_001"], ["T1N", "T1C", "T2W", "T2F"], "T1C",
                     Path(os.environ["synthUNet_results"]).parent / "predict_input")
PY
for CONFIGURATION in 3d_fullres 2.5d; do
    synth_train 501 "$CONFIGURATION" T1C 0 --epochs 1 --skip_final_validation --device "$DEVICE"
    START=$SECONDS
    synth_predict -i "$SCRATCH/predict_input" -o "$SCRATCH/predicted_$CONFIGURATION" -d 501 -c "$CONFIGURATION" -f 0 \
        --device "$DEVICE"
    echo "predicted 2 cases with $CONFIGURATION in $((SECONDS - START)) s (start-up included)"
    ls "$SCRATCH/predicted_$CONFIGURATION"
done

step "one BraTS-size case on $DEVICE (benchmarks/inference_case.py: 5 cases at 1 mm planned for $DEVICE, 1-epoch models)"
python3 benchmarks/inference_case.py --work "$SCRATCH/inference_case" --device "$DEVICE" \
    --rows ${GPU_CHECK_CASE_ROWS:-3d_1 3d_5_tta 25_9} -o "${OUT:-$SCRATCH}/inference_case.md"

step "done in ${SECONDS} s; log: $LOG"
