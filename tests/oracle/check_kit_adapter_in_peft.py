"""Load an adapter kit wrote with PEFT onto a tiny model, and record what PEFT made of it next to the adapter:
peft_logits.safetensors (logits on the model's plain.input_ids) and peft_record.json (the adapted modules with the
rank and scaling PEFT gave each), for kit's tests to compare with.

    python tests/oracle/check_kit_adapter_in_peft.py [ADAPTER_DIR [TINY_MODEL]]

Defaults: tests/fixtures/lora/kit_written on the tiny llama. The adapters are written by kit's tests with
KIT_WRITE_FIXTURES=1 (`cargo test -p kit --test suite lora_parity::adapters_kit_writes_load_in_peft` for kit_written,
`cargo test -p kit --test suite qlora_patterns::kit_written_patterns` for kit_written_patterns; each then fails on purpose until this script has read the new files).
"""
import json
import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def main():
    adapter_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "lora", "kit_written")
    tiny = sys.argv[2] if len(sys.argv) > 2 else "llama"
    base = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "tiny", tiny), attn_implementation="eager").eval()
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    modules = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            key = name[len("base_model.model."):]
            modules[key] = {"r": module.r["default"], "scaling": module.scaling["default"]}
    # Every tensor in the file must have been loaded into a module (PEFT only warns about stray keys).
    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    assert len(saved) == 2 * len(modules), f"file has {len(saved)} tensors, PEFT adapted {len(modules)} modules"
    ids = load_file(os.path.join(ROOT, "tiny", tiny, "expected.safetensors"))["plain.input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    save_file({"logits": logits.contiguous()}, os.path.join(adapter_dir, "peft_logits.safetensors"))
    with open(os.path.join(adapter_dir, "peft_record.json"), "w") as f:
        json.dump({"peft_version": __import__("peft").__version__, "modules": dict(sorted(modules.items()))}, f,
                  indent=1)
    print("PEFT adapted", len(modules), "modules; logits and record written to", adapter_dir)


if __name__ == "__main__":
    main()
