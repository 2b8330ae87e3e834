"""The PyTorch side of kit's speed benches, on the same GGUF weights (transformers dequantizes them to f32).

    lora     one LoRA training step in PyTorch + PEFT: r = 16 (alpha 32) on all seven projections, batch x seq
             tokens (the ids `cargo bench -p kit --bench lora_step` uses), mean next-token cross-entropy, AdamW.
    dpo      TRL's DPOTrainer, 4 pairs a step of datasets/pref_ja/train.jsonl, max_length 256, the same LoRA
             (the reference pass runs with the adapter disabled), as `cargo bench -p kit --bench train_step` does.
    generate HF transformers' greedy `generate` at --batch rows, 64 new tokens a row, on the prompts
             `cargo bench -p kit --bench generate` uses: decode tokens/s = (new tokens - rows) / (total - prefill),
             prefill timed as a 1-token generate, medians of 3 after a warm-up, as kit's bench computes it.
    grpo     TRL's GRPOTrainer, 2 prompts x 8 completions <= 32 tokens of datasets/math_ja/train.jsonl, beta 0.04,
             the same LoRA, rewards: the format and accuracy rules of kit::rewards in a few lines of Python.

Prints one line `RESULT <seconds per step, median> <peak RSS MB of the steps>` for the bench to parse, after a
human-readable line. The peak is reset after loading (/proc/self/clear_refs), as kit's bench does, so both sides
report what the training steps themselves hold. Run through kit/benches/reference/pytorch.sh, which makes the venv.
"""
import argparse
import os
import statistics
import sys
import time


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def hf_dir(gguf):
    """The GGUF's weights as a plain transformers checkpoint (f32, converted once, next to the venv): the trainers
    refuse a model that transformers still marks as GGUF-quantized."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = os.path.join(os.path.dirname(sys.executable), "..", "..", "hf", os.path.basename(gguf).removesuffix(".gguf"))
    if not os.path.exists(os.path.join(out, "config.json")):
        kw = dict(gguf_file=os.path.basename(gguf))
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), dtype="float32", **kw)
        # The tensors are plain f32 already; only the GGUF marks stop save_pretrained.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out + ".part")
        AutoTokenizer.from_pretrained(os.path.dirname(gguf), **kw).save_pretrained(out + ".part")
        os.replace(out + ".part", out)
    return out


def load(gguf, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = hf_dir(gguf)
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(path)


def lora(args):
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load(args.gguf, torch.float32)
    model.config.use_cache = False
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
    ids = torch.tensor(
        [[((r * args.seq + j) * 7919 % 40_000 + 100) for j in range(args.seq)] for r in range(args.batch)]
    )
    autocast = args.autocast == "bf16"
    times = []
    reset_peak_rss()
    for _ in range(args.steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[1:])  # the first step warms up
    label = "bf16 autocast" if autocast else "f32"
    print(f"PyTorch {torch.__version__} + PEFT, {label}, {torch.get_num_threads()} threads: {step:.2f} s/step")
    print(f"RESULT {step:.4f} {peak_rss_mb():.0f}")


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def trl_args(cls, args, **kw):
    import torch

    return cls(
        output_dir=os.path.join("/tmp", f"kit-ref-{args.what}-{os.getpid()}"),
        learning_rate=1e-5,
        max_steps=args.steps,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=args.autocast == "bf16",
        dataloader_num_workers=0,
        disable_tqdm=True,
        **kw,
    )


def timed_train(trainer, args):
    """train_runtime / steps, as kit's bench divides its trainer's train_runtime (the first step included); the peak
    RSS is reset when training begins."""
    import transformers

    class ResetPeak(transformers.TrainerCallback):
        def on_train_begin(self, *a, **k):
            reset_peak_rss()

    trainer.add_callback(ResetPeak())
    out = trainer.train()
    return out.metrics["train_runtime"] / args.steps


def jsonl(path):
    import json

    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def dpo(args):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    model, tok = load(args.gguf, torch.float32)
    rows = jsonl(os.path.join(args.datasets, "pref_ja/train.jsonl"))[:16]
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    cfg = trl_args(DPOConfig, args, per_device_train_batch_size=4, max_length=256, beta=0.1)
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS)
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok, peft_config=peft)
    step = timed_train(trainer, args)
    print(f"TRL DPO, {args.autocast}: {step:.2f} s/step")
    print(f"RESULT {step:.4f} {peak_rss_mb():.0f}")


def grpo(args):
    import re

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    model, tok = load(args.gguf, torch.float32)
    rows = jsonl(os.path.join(args.datasets, "math_ja/train.jsonl"))[:8]
    data = Dataset.from_list([{"prompt": r["prompt"], "answer": str(r["answer"])} for r in rows])

    def fmt(completions, **kw):
        return [1.0 if re.search(r"答え[:：]\s*-?\d+", c) else 0.0 for c in completions]

    def accuracy(completions, answer, **kw):
        out = []
        for c, a in zip(completions, answer):
            nums = re.findall(r"-?\d+", c)
            out.append(1.0 if nums and nums[-1] == a else 0.0)
        return out

    cfg = trl_args(
        GRPOConfig,
        args,
        per_device_train_batch_size=16,
        num_generations=8,
        max_completion_length=32,
        beta=0.04,
    )
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[fmt, accuracy], args=cfg, train_dataset=data, processing_class=tok, peft_config=peft
    )
    step = timed_train(trainer, args)
    print(f"TRL GRPO, {args.autocast}: {step:.2f} s/step")
    print(f"RESULT {step:.4f} {peak_rss_mb():.0f}")


def generate(args):
    import torch

    model, tok = load(args.gguf, torch.float32)
    model.eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    prompts = [f"Once upon a time, in a village number {i}, there lived" for i in range(args.batch)]
    enc = tok(prompts, return_tensors="pt", padding=True)

    def run(n):
        with torch.inference_mode():
            return model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)

    def median_s(n):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run(n)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    run(64)
    prefill = median_s(1)
    total = median_s(64)
    decode = (64 * args.batch - args.batch) / max(total - prefill, 1e-9)
    print(f"HF generate, f32, batch {args.batch}: {decode:.1f} decode tokens/s")
    print(f"RESULT {decode:.2f} {peak_rss_mb():.0f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["lora", "dpo", "grpo", "generate"])
    p.add_argument("--gguf", required=True)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--autocast", choices=["none", "bf16"], default="none")
    p.add_argument("--datasets", default=os.path.join(os.path.dirname(__file__), "../../../datasets"))
    args = p.parse_args()
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    {"lora": lora, "dpo": dpo, "grpo": grpo, "generate": generate}[args.what](args)


if __name__ == "__main__":
    main()
