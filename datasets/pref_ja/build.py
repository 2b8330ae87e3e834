"""Build pref_ja: Japanese preference pairs (prompt / chosen / rejected) with a labelled flaw in each rejected answer,
written by the kit authors, plus a noisy variant with exactly 25% of the train pairs swapped.

    python3 datasets/pref_ja/build.py

Rows live in `parts/<flaw>.py`, one list per flaw type. Split rule, within each flaw list: index % 13 == 5 → dev,
index % 13 == 11 → test, otherwise train. Noisy variant: the train rows in the same order; `random.Random(7)` samples
round(0.25 × n) indices whose chosen and rejected are swapped; every row carries `"swapped": true|false`.
"""
import importlib.util
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
FLAWS = ["factual_error", "ignores_instruction", "english_mixed", "unnatural_japanese", "verbose", "unsafe_compliance", "sycophancy"]


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "parts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ROWS


def write(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    splits = {"train.jsonl": [], "dev.jsonl": [], "test.jsonl": []}
    for flaw in FLAWS:
        for i, (prompt, chosen, rejected) in enumerate(load(flaw)):
            name = "dev.jsonl" if i % 13 == 5 else "test.jsonl" if i % 13 == 11 else "train.jsonl"
            splits[name].append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "flaw": flaw})
    for name, rows in splits.items():
        write(os.path.join(HERE, name), rows)
    train = splits["train.jsonl"]
    swapped = set(random.Random(7).sample(range(len(train)), round(0.25 * len(train))))
    noisy = []
    for i, r in enumerate(train):
        if i in swapped:
            noisy.append({**r, "chosen": r["rejected"], "rejected": r["chosen"], "swapped": True})
        else:
            noisy.append({**r, "swapped": False})
    write(os.path.join(HERE, "noisy", "train.jsonl"), noisy)
    print({k: len(v) for k, v in splits.items()}, "total", sum(len(v) for v in splits.values()), "noisy swapped", len(swapped))


if __name__ == "__main__":
    main()
