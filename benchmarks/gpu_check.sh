#!/usr/bin/env bash
# The GPU check, one prepared script (< 8 min on one H200):
#   1. bf16 trainer fraction of peak at m in {16384, 65536}, n in {768, 2048}  (target >= 0.4)
#   2. stacked K = 8 against the same 8 runs one after another at n = 64, m = 512  (target >= 4x)
#   3. the quickstart sweep with `gpus: 0.25` packs (four packs share the GPU)
# Each step prints its table and writes its JSON under --out. Needs a CUDA build of torch
# (make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" venv).
#
# Usage: benchmarks/gpu_check.sh [--dry-run] [--out DIR] [--python PY] [--seconds S]
#   --dry-run   print the commands it would run, one a line, and exit (no GPU needed)
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

DRY_RUN=0
OUT="benchmarks/out/gpu"
PY="${PYTHON:-.venv/bin/python}"
SECONDS_PER_SHAPE=4
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --out) [[ $# -ge 2 ]] || { echo "error: --out needs a directory" >&2; exit 2; }; OUT="$2"; shift 2 ;;
    --python) [[ $# -ge 2 ]] || { echo "error: --python needs an interpreter" >&2; exit 2; }; PY="$2"; shift 2 ;;
    --seconds)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "error: --seconds needs a positive number" >&2; exit 2; }
      SECONDS_PER_SHAPE="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

COMMANDS=(
  "$PY -m benchmarks trainer --device cuda --precision bf16 --n 768,2048 --m 16384,65536 --batch-size 4096 --seconds $SECONDS_PER_SHAPE --repeats 2 --out $OUT"
  "$PY -m benchmarks stacking --device cuda --n 64 --m 512 --batch-size 1024 --ks 1,8 --seconds 2 --repeats 2 --out $OUT"
  "$PY -m benchmarks sweep --gpus 0.25 --out $OUT"
)

if [[ $DRY_RUN -eq 1 ]]; then
  printf '%s\n' "${COMMANDS[@]}"
  exit 0
fi

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: torch ' + torch.__version__ + ' sees no CUDA device (install a CUDA build, see the header of benchmarks/gpu_check.sh)')"
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
for cmd in "${COMMANDS[@]}"; do
  echo "+ $cmd"
  start=$(date +%s)
  $cmd
  echo "  ($(( $(date +%s) - start )) s)"
done
