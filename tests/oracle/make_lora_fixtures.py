"""PEFT LoRA on the tiny models: adapters saved by PEFT, and the loss, logits and LoRA gradients PEFT computes.

Run from the repository root (after make_tiny_models.py):
    python tests/oracle/make_lora_fixtures.py
Writes tests/fixtures/lora/<model>/{adapter_config.json, adapter_model.safetensors, expected.safetensors}.

Adapter: r = 4, lora_alpha = 8 (rsLoRA for qwen2, to cover both scales), on all seven projections. PEFT
initialises B to zero; we overwrite A and B with seeded N(0, 0.1) values so that both gradients are non-zero.
expected.safetensors: `loss` (mean next-token CE on the fixture's plain.input_ids), `logits`, and for every adapter
tensor `grad.<key>` = d loss / d <key>, with <key> as in adapter_model.safetensors.
"""
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    for name in ["llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3"]:
        src = os.path.join(ROOT, "tiny", name)
        model = AutoModelForCausalLM.from_pretrained(src, attn_implementation="eager").eval()
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM",
                         use_rslora=(name == "qwen2"))
        peft_model = get_peft_model(model, cfg)
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for pname, p in peft_model.named_parameters():
                if "lora_" in pname:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        out = os.path.join(ROOT, "lora", name)
        peft_model.save_pretrained(out)
        os.remove(os.path.join(out, "README.md"))  # PEFT's model-card stub
        ids = load_file(os.path.join(src, "expected.safetensors"))["plain.input_ids"]
        logits = peft_model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        saved = load_file(os.path.join(out, "adapter_model.safetensors"))
        expected = {"loss": loss.detach().reshape(1), "logits": logits.detach().contiguous()}
        params = dict(peft_model.named_parameters())
        for key in saved:
            # Saved keys drop the adapter name: "...q_proj.lora_A.weight" is the parameter "...q_proj.lora_A.default.weight".
            pkey = key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
            expected["grad." + key] = params[pkey].grad.contiguous()
        save_file(expected, os.path.join(out, "expected.safetensors"))
        print(name, "ok", f"loss={loss.item():.4f}", len(saved), "tensors")


if __name__ == "__main__":
    main()
