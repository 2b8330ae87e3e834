#!/usr/bin/env bash
# The PyTorch references of kit's training benches: a venv with torch, transformers, peft, trl and gguf from PyPI
# (about 6 GB with the CUDA wheels torch brings; it runs on the CPU) at $KIT_HOME/reference/torch-venv. Once it
# exists, `cargo bench -p kit --bench lora_step` runs kit/benches/reference/pytorch_steps.py right after kit and
# prints both figures and their ratio. Not part of CI. Run it, then the bench, on an otherwise idle machine:
#   kit/benches/reference/pytorch.sh && cargo bench -p kit --bench lora_step
set -euo pipefail
KIT_HOME="${KIT_HOME:-$HOME/.cache/kit}"
venv="$KIT_HOME/reference/torch-venv"
mkdir -p "$KIT_HOME/reference"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch, transformers, peft, trl, gguf" 2>/dev/null ||
    "$venv/bin/pip" install -q torch transformers peft trl gguf sentencepiece safetensors
"$venv/bin/python" -c "import torch, transformers, peft, trl; print('torch', torch.__version__, '· transformers', transformers.__version__, '· peft', peft.__version__, '· trl', trl.__version__)"
