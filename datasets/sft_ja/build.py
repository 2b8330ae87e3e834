"""Build sft_ja: Japanese instruction → response pairs in TRL's conversational format, written by the kit authors.

    python3 datasets/sft_ja/build.py

Rows live in `parts/<task>.py` (one list per task category). Split rule, within each category: index % 13 == 5 →
dev, index % 13 == 11 → test, otherwise train. Rows in `parts/with_system.py` carry a system message.
"""
import importlib.util
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
TASKS = ["explanation", "summary", "rewriting", "classification", "creative", "refusal", "reasoning", "qa", "advice"]


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "parts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ROWS


def main():
    splits = {"train.jsonl": [], "dev.jsonl": [], "test.jsonl": []}
    for task in TASKS:
        for i, (instruction, response) in enumerate(load(task)):
            row = {"messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}], "task": task}
            name = "dev.jsonl" if i % 13 == 5 else "test.jsonl" if i % 13 == 11 else "train.jsonl"
            splits[name].append(row)
    # Rows with a system message (a persona or a style rule) all go to train.
    for system, instruction, response, task in load("with_system"):
        splits["train.jsonl"].append({"messages": [{"role": "system", "content": system}, {"role": "user", "content": instruction}, {"role": "assistant", "content": response}], "task": task})
    for name, rows in splits.items():
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print({k: len(v) for k, v in splits.items()}, "total", sum(len(v) for v in splits.values()))


if __name__ == "__main__":
    main()
