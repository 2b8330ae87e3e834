"""Load the adapter kit wrote (tests/fixtures/lora/kit_written, made by
`KIT_WRITE_FIXTURES=1 cargo test --test lora_parity adapters_kit_writes_load_in_peft`) with PEFT onto the tiny Llama,
and record PEFT's logits next to it (peft_logits.safetensors) for kit's test to compare.

    python tests/oracle/check_kit_adapter_in_peft.py
"""
import os

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def main():
    base = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "tiny", "llama"), attn_implementation="eager").eval()
    adapter_dir = os.path.join(ROOT, "lora", "kit_written")
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    loaded = {n for n, _ in model.named_parameters() if "lora_" in n}
    assert len(loaded) == 3 * 3 * 2, f"PEFT attached {len(loaded)} LoRA tensors"
    ids = load_file(os.path.join(ROOT, "tiny", "llama", "expected.safetensors"))["plain.input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    save_file({"logits": logits.contiguous()}, os.path.join(adapter_dir, "peft_logits.safetensors"))
    print("PEFT loaded", len(loaded), "LoRA tensors; logits recorded")


if __name__ == "__main__":
    main()
