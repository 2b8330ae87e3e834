"""PEFT's module selection and per-module rank/alpha, recorded for kit to reproduce.

Run from the repository root (after make_tiny_models.py):
    python tests/oracle/make_lora_pattern_fixtures.py
Writes tests/fixtures/lora/<case>/{adapter_config.json, adapter_model.safetensors, expected.safetensors}.

Cases (each on a tiny model from tests/fixtures/tiny):
- patterns_llama: target_modules as a list, exclude_modules, layers_to_transform, rank_pattern, alpha_pattern.
- regex_qwen2: target_modules as one regex string, exclude_modules as a regex, rsLoRA with rank_pattern.
- mlp: a module-level case with no decoder: three nn.Linear layers named like HF projections
  (y = down_proj(silu(gate_proj(x)) * up_proj(x))), its base weights and input saved as base.safetensors.
A and B are overwritten with seeded N(0, 0.1) values so that every gradient is non-zero. expected.safetensors holds
`loss`, `logits` (or `y`), and `grad.<key>` for every adapter tensor; `modules` lists the adapted modules in order.
"""
import json
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures")

CASES = {
    "patterns_llama": ("llama", dict(
        r=4, lora_alpha=8,
        target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
        exclude_modules=["layers.0.mlp.up_proj"],
        layers_to_transform=[0, 2],
        rank_pattern={"model.layers.2.self_attn.q_proj": 6, "down_proj": 2},
        alpha_pattern={"v_proj": 3},
    )),
    "regex_qwen2": ("qwen2", dict(
        r=4, lora_alpha=8, use_rslora=True,
        target_modules=r".*\.(1|2)\..*(k_proj|o_proj|gate_proj)",
        exclude_modules=r".*\.2\.self_attn\.o_proj",
        rank_pattern={"gate_proj": 3},
    )),
}


def randomize(peft_model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def grads(peft_model, saved):
    params = dict(peft_model.named_parameters())
    out = {}
    for key in saved:
        # Saved keys drop the adapter name: "...lora_A.weight" is the parameter "...lora_A.default.weight".
        pkey = key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        out["grad." + key] = params[pkey].grad.contiguous()
    return out


def save_case(peft_model, out, expected):
    peft_model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # PEFT's model-card stub
    saved = load_file(os.path.join(out, "adapter_model.safetensors"))
    expected.update(grads(peft_model, saved))
    save_file(expected, os.path.join(out, "expected.safetensors"))
    modules = sorted({k[len("base_model.model."):].rsplit(".lora_", 1)[0] for k in saved})
    with open(os.path.join(out, "modules.json"), "w") as f:
        json.dump(modules, f, indent=1)
    return modules


def decoder_case(case, model_name, kwargs):
    src = os.path.join(ROOT, "tiny", model_name)
    model = AutoModelForCausalLM.from_pretrained(src, attn_implementation="eager").eval()
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **kwargs))
    randomize(peft_model, 11)
    ids = load_file(os.path.join(src, "expected.safetensors"))["plain.input_ids"]
    logits = peft_model(input_ids=ids).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    loss.backward()
    out = os.path.join(ROOT, "lora", case)
    modules = save_case(peft_model, out, {"loss": loss.detach().reshape(1), "logits": logits.detach().contiguous()})
    print(case, "ok", f"loss={loss.item():.4f}", len(modules), "modules")


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = torch.nn.Linear(16, 24, bias=False)
        self.up_proj = torch.nn.Linear(16, 24, bias=True)
        self.down_proj = torch.nn.Linear(24, 16, bias=False)

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def mlp_case():
    torch.manual_seed(3)
    model = Mlp()
    base = {f"{n}": p.detach().clone().contiguous() for n, p in model.named_parameters()}
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(4))
    c = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(5))
    cfg = LoraConfig(r=3, lora_alpha=6, lora_dropout=0.0, target_modules=["gate_proj", "up_proj", "down_proj"],
                     rank_pattern={"down_proj": 5})
    peft_model = get_peft_model(model, cfg)
    randomize(peft_model, 12)
    y = peft_model(x)
    loss = (y * c).sum()
    loss.backward()
    out = os.path.join(ROOT, "lora", "mlp")
    os.makedirs(out, exist_ok=True)
    save_file({**base, "x": x, "c": c}, os.path.join(out, "base.safetensors"))
    save_case(peft_model, out, {"loss": loss.detach().reshape(1), "y": y.detach().contiguous()})
    print("mlp ok", f"loss={loss.item():.4f}")


def main():
    for case, (model_name, kwargs) in CASES.items():
        decoder_case(case, model_name, kwargs)
    mlp_case()


if __name__ == "__main__":
    main()
