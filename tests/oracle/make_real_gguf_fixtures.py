"""transformers' view of the two real GGUF models (weights dequantized to f32), for kit's parity tests.

Run from the repository root after `kit fetch` (models in $KIT_HOME/models, default ~/.cache/kit/models):
    python tests/oracle/make_real_gguf_fixtures.py
Writes tests/fixtures/real/{smollm2,gemma3}.json (small: top-5 logits per position, not full vocabularies).
"""
import json
import os

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}
PROMPTS = [
    "ねこはかわいい。",
    "日本の首都は",
    "本日はお忙しいところ、お時間をいただきありがとうございます。",
    "The capital of France is",
    "for i in range(10):",
    "In 2023, about 8 billion people lived on Earth, and",
]
NEW_TOKENS = 20
OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "real")


def main():
    home = os.environ.get("KIT_HOME", os.path.join(os.path.expanduser("~"), ".cache", "kit"))
    models_dir = os.path.join(home, "models")
    os.makedirs(OUT, exist_ok=True)
    for name, gguf in MODELS.items():
        tok = AutoTokenizer.from_pretrained(models_dir, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(models_dir, gguf_file=gguf, dtype=torch.float32).eval()
        record = {"transformers": transformers.__version__, "gguf": gguf, "prompts": []}
        for text in PROMPTS:
            ids = tok(text, return_tensors="pt").input_ids
            with torch.no_grad():
                logits = model(ids).logits[0]
                gen = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, ids.shape[1]:]
            top = logits.topk(5, dim=-1)
            record["prompts"].append({
                "text": text,
                "input_ids": ids[0].tolist(),
                "argmax": logits.argmax(-1).tolist(),
                "top5_ids": top.indices.tolist(),
                "top5_logits": [[round(x, 5) for x in row] for row in top.values.tolist()],
                "top1_top2_gap": [round(r[0] - r[1], 5) for r in top.values.tolist()],
                "greedy_ids": gen.tolist(),
                "greedy_text": tok.decode(gen, skip_special_tokens=True),
            })
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(record, f, ensure_ascii=False, indent=1)
        print(name, "ok")


if __name__ == "__main__":
    main()
