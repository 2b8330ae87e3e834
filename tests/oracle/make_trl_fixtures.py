"""TRL's own loss code on fixed inputs: the oracle for kit's DPO, GRPO, reward-model and SFT losses and metrics.

Run from the repository root (after make_tiny_models.py and make_lora_fixtures.py):
    python tests/oracle/make_trl_fixtures.py
Writes tests/fixtures/trl/{dpo,grpo,grpo_accum2,reward,sft}.json and a `grads.safetensors` per model-based case
(`python tests/oracle/make_trl_fixtures.py grpo_accum2` writes only the files named).

How TRL is called. TRL's trainers compute their losses inside methods that also run the model; we call those methods
unbound, on a stand-in `self` holding only the attributes they read (TRL version in each file):
- DPO: `DPOTrainer._compute_loss`, with a stand-in model that runs the tiny Llama fixture + the PEFT adapter of
  tests/fixtures/lora/llama and returns the per-token log-probs, entropies, mean logits and top-1 flags that TRL's
  fused LM head would. Reference log-probs are the same model with the adapter disabled, passed as precomputed
  (`precompute_ref_logps`), as kit's adapter-off reference computes them. Gradients of every LoRA tensor are recorded.
- GRPO: `GRPOTrainer._compute_loss` with `_get_per_token_logps_and_entropies` returning fixed per-token log-probs
  (a leaf tensor, so d loss / d logp is recorded). `grpo_accum2` is the same generation batch cut into two
  micro-batches of one group each (gradient accumulation 2, `steps_per_generation` 2, as TRL's defaults make it):
  TRL's loss of each micro-batch, their sum (what the accumulated gradient is the gradient of) and that gradient. Advantages: TRL computes them inside
  `_generate_and_score_completions` next to generation, which cannot run without a model; the lines for the
  default `multi_objective_aggregation="sum_then_normalize"` are mirrored in `grpo_advantages` below.
- Reward: `RewardTrainer.compute_loss` with a stand-in model returning fixed rewards (a leaf tensor).
- SFT: transformers' causal-LM loss on the same tiny model + adapter with completion-only labels (-100 elsewhere),
  which is what `SFTTrainer.compute_loss` returns with `completion_only_loss`, and TRL's `mean_token_accuracy`.
"""
import json
import os
import sys
from collections import defaultdict
from types import SimpleNamespace

import torch
import trl
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.reward_trainer import RewardTrainer
from trl.trainer.utils import nanstd

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures")
OUT = os.path.join(ROOT, "trl")

# Token ids on the tiny model's 256-token vocabulary: prompt, chosen, rejected.
PAIRS = [
    ([5, 17, 33, 8], [40, 41, 2], [90, 91, 92, 2]),
    ([9, 12], [60, 61, 62, 63, 2], [70, 2]),
    ([100, 101, 102], [110, 2], [120, 121, 2]),
]
PAD = 0


def accelerator():
    ident = lambda x: x
    return SimpleNamespace(
        device=torch.device("cpu"),
        gather=ident,
        gather_for_metrics=ident,
        reduce=lambda x, reduction="sum": x,
        num_processes=1,
        sync_gradients=True,
    )


def tiny_peft():
    model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "tiny", "llama"), attn_implementation="eager")
    peft_model = PeftModel.from_pretrained(model, os.path.join(ROOT, "lora", "llama"), is_trainable=True)
    peft_model.train()  # dropout is 0 in this adapter; train mode as during training
    return peft_model


def lora_grads(peft_model):
    saved = load_file(os.path.join(ROOT, "lora", "llama", "adapter_model.safetensors"))
    params = dict(peft_model.named_parameters())
    out = {}
    for key in saved:
        pkey = key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        out["grad." + key] = params[pkey].grad.detach().clone().contiguous()
    return out


def preference_batch():
    """TRL's DataCollatorForPreference: [chosen…; rejected…], right-padded, completion_mask on completion tokens."""
    seqs = [p + c for p, c, _ in PAIRS] + [p + r for p, _, r in PAIRS]
    masks = [[0] * len(p) + [1] * len(c) for p, c, _ in PAIRS] + [[0] * len(p) + [1] * len(r) for p, _, r in PAIRS]
    t = max(len(s) for s in seqs)
    ids = torch.tensor([s + [PAD] * (t - len(s)) for s in seqs])
    att = torch.tensor([[1] * len(s) + [0] * (t - len(s)) for s in seqs])
    cm = torch.tensor([m + [0] * (t - len(m)) for m in masks])
    return ids, att, cm


class FusedHeadStandIn(torch.nn.Module):
    """What TRL's `fused_lm_head=True` forward returns, computed from the real logits."""

    def __init__(self, peft_model):
        super().__init__()
        self.m = peft_model
        self.training = True

    def forward(self, input_ids, attention_mask, labels, fused_lm_head=True, **_):
        logits = self.m(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
        target = labels[:, 1:]
        safe = target.clamp(min=0)
        logp_all = logits.log_softmax(-1)
        log_probs = logp_all.gather(-1, safe.unsqueeze(-1)).squeeze(-1) * (target != -100)
        p = logp_all.exp()
        entropy = -(p * logp_all).sum(-1)
        return SimpleNamespace(
            log_probs=log_probs,
            entropy=entropy.detach(),
            mean_logits=logits.detach().mean(-1),
            is_top1=(logits.detach().argmax(-1) == safe),
        )


def dpo_cases():
    cases = []
    ids, att, cm = preference_batch()
    for loss_type, beta in [("sigmoid", 0.1), ("sigmoid", 0.5), ("hinge", 0.1), ("ipo", 0.1), ("ipo", 0.5)]:
        peft_model = tiny_peft()
        model = FusedHeadStandIn(peft_model)
        labels = ids.masked_fill(cm == 0, -100)
        with torch.no_grad(), peft_model.disable_adapter():
            ref = model(ids, att, labels).log_probs.sum(1)
        n = len(PAIRS)
        inputs = {
            "input_ids": ids,
            "attention_mask": att,
            "completion_mask": cm,
            "ref_chosen_logps": ref[:n],
            "ref_rejected_logps": ref[n:],
        }
        me = SimpleNamespace(
            model=model, accelerator=accelerator(), args=SimpleNamespace(), aux_loss_enabled=False, beta=beta,
            f_alpha_divergence_coef=1.0, f_divergence_type="reverse_kl", label_smoothing=0.0, ld_alpha=None,
            loss_types=[loss_type], loss_weights=[1.0], precompute_ref_logps=True, ref_model=None,
            use_weighting=False, _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
            _total_train_tokens=0, _tp_size=1,
        )
        loss = DPOTrainer._compute_loss(me, model, inputs, return_outputs=False)
        loss.backward()
        name = f"dpo_{loss_type}_beta{beta}"
        save_file(lora_grads(peft_model), os.path.join(OUT, f"{name}.grads.safetensors"))
        metrics = {k: float(v[-1]) for k, v in me._metrics["train"].items()}
        cases.append({"name": name, "loss_type": loss_type, "beta": beta, "loss": loss.item(), "metrics": metrics})
        print(name, f"loss={loss.item():.6f}", metrics.get("rewards/accuracies"))
    return {"trl_version": trl.__version__, "pairs": [list(map(list, p)) for p in PAIRS], "cases": cases}


def grpo_advantages(rewards_per_func, weights, g, scale):
    """Mirror of GRPOTrainer._generate_and_score_completions, multi_objective_aggregation="sum_then_normalize"."""
    rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    rewards[unscorable] = torch.nan
    mean_grouped = torch.nanmean(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    if scale in ["group", "none"]:
        std = nanstd(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    else:
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean_grouped
    if scale != "none":
        adv = adv / (std + 1e-4)
    is_std_zero = torch.isclose(std, torch.zeros_like(std))
    adv = torch.nan_to_num(adv, nan=0.0)
    logged = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
    logged[unscorable] = torch.nan
    metrics = {
        "reward": torch.nanmean(logged).item(),
        "reward_std": nanstd(logged).item(),
        "frac_reward_zero_std": is_std_zero.float().mean().item(),
    }
    for i, name in enumerate(["format", "accuracy"]):
        metrics[f"rewards/{name}/mean"] = torch.nanmean(rewards_per_func[:, i]).item()
        metrics[f"rewards/{name}/std"] = nanstd(rewards_per_func[:, i]).item()
    return adv, metrics


def grpo_cases(accumulation=1):
    gen = torch.Generator().manual_seed(3)
    n, t, g = 8, 6, 4
    rewards_per_func = torch.tensor(
        [[1, 1], [0, 0], [1, 0], [1, float("nan")], [1, 1], [1, 1], [1, 1], [1, 1]], dtype=torch.float32
    )
    weights = torch.tensor([1.0, 0.5])
    mask = torch.ones(n, t, dtype=torch.long)
    for row, length in enumerate([6, 4, 5, 6, 2, 6, 3, 6]):
        mask[row, length:] = 0
    logps = -torch.rand(n, t, generator=gen) * 3
    old = logps + 0.3 * torch.randn(n, t, generator=gen)
    ref = logps + 0.2 * torch.randn(n, t, generator=gen)
    cases = []
    for loss_type, beta, eps_high, scale, bias_kl in [
        ("grpo", 0.0, 0.2, "group", True),
        ("grpo", 0.04, 0.28, "batch", False),
        ("grpo", 0.04, 0.28, "batch", True),
        ("dr_grpo", 0.04, 0.2, "none", True),
        ("dapo", 0.0, 0.28, "group", True),
        ("dapo", 0.04, 0.2, "group", False),
        ("dapo", 0.04, 0.2, "group", True),
        ("bnpo", 0.04, 0.2, "batch", True),
    ]:
        # Advantages are computed over the whole generation batch before it is cut into micro-batches (as TRL does).
        adv, reward_metrics = grpo_advantages(rewards_per_func, weights, g, scale)
        leaf = logps.clone().requires_grad_(True)
        rows = n // accumulation
        loss = 0.0
        micro_losses = []
        micro_metrics = defaultdict(list)
        for micro in range(accumulation):
            part = slice(micro * rows, (micro + 1) * rows)
            me = SimpleNamespace(
                _get_per_token_logps_and_entropies=lambda *a, part=part, **k: (leaf[part], torch.ones(rows, t), None),
                top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
                beta=beta, loss_type=loss_type, epsilon_low=0.2, epsilon_high=eps_high, use_vllm=False,
                vllm_importance_sampling_correction=False, model=SimpleNamespace(training=True),
                current_gradient_accumulation_steps=accumulation, max_completion_length=t, accelerator=accelerator(),
                _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, aux_loss_enabled=False,
                args=SimpleNamespace(use_bias_correction_kl=bias_kl, delta=None, steps_per_generation=accumulation),
                _entropy_bonus_enabled=False, use_adaptive_entropy=False, entropy_coef=0.0,
            )
            inputs = {
                "prompt_ids": torch.ones(rows, 1, dtype=torch.long),
                "prompt_mask": torch.ones(rows, 1, dtype=torch.long),
                "completion_ids": torch.ones(rows, t, dtype=torch.long),
                "completion_mask": mask[part],
                "advantages": adv[part],
                "old_per_token_logps": old[part],
                "ref_per_token_logps": ref[part],
                # Completion tokens of the whole generation batch, not of this micro-batch.
                "num_items_in_batch": mask.sum(),
            }
            micro_loss = GRPOTrainer._compute_loss(me, None, inputs)
            micro_losses.append(micro_loss.item())
            loss = loss + micro_loss
            for k, v in me._metrics["train"].items():
                if k != "entropy":
                    micro_metrics[k].append(float(v[-1]))
        # transformers leaves GRPO's loss unscaled (`loss_is_scaled_for_ga`): the step's gradient is that of the sum.
        loss.backward()
        # Logged metrics are the mean over the micro-batches of the logging step.
        metrics = {k: sum(v) / len(v) for k, v in micro_metrics.items()}
        metrics.update(reward_metrics)
        name = f"grpo_{loss_type}_beta{beta}_eh{eps_high}_{scale}_biaskl{bias_kl}"
        cases.append({
            "name": name, "loss_type": loss_type, "beta": beta, "epsilon": 0.2, "epsilon_high": eps_high,
            "scale_rewards": scale, "use_bias_correction_kl": bias_kl, "loss": loss.item(), "advantages": adv.tolist(),
            **({"micro_losses": micro_losses} if accumulation > 1 else {}),
            "grad_per_token_logps": leaf.grad.tolist(), "metrics": metrics,
        })
        print(name, f"loss={loss.item():.6f}")
    return {
        "trl_version": trl.__version__, "num_generations": g, "max_completion_length": t,
        **({"gradient_accumulation_steps": accumulation} if accumulation > 1 else {}),
        "reward_names": ["format", "accuracy"], "reward_weights": weights.tolist(),
        # NaN (a function that does not apply) is written as null.
        "rewards_per_func": [[None if x != x else x for x in row] for row in rewards_per_func.tolist()],
        "per_token_logps": logps.tolist(), "old_per_token_logps": old.tolist(), "ref_per_token_logps": ref.tolist(),
        "completion_mask": mask.tolist(), "cases": cases,
    }


def reward_cases():
    chosen = torch.tensor([1.2, -0.3, 0.5, 2.0])
    rejected = torch.tensor([0.4, 0.1, -1.5, 2.5])
    margin = torch.tensor([0.5, 0.0, 1.0, 0.2])
    cases = []
    for use_margin, center in [(False, None), (True, None), (False, 0.01), (True, 0.01)]:
        leaf = torch.cat([chosen, rejected]).clone().requires_grad_(True)
        me = SimpleNamespace(
            model=SimpleNamespace(training=True), args=SimpleNamespace(center_rewards_coefficient=center),
            accelerator=accelerator(), _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
            _total_train_tokens=0, _tp_size=1,
        )
        inputs = {"input_ids": torch.ones(8, 3, dtype=torch.long), "attention_mask": torch.ones(8, 3, dtype=torch.long)}
        if use_margin:
            inputs["margin"] = margin
        model = lambda **kw: SimpleNamespace(logits=leaf.unsqueeze(-1))
        loss = RewardTrainer.compute_loss(me, model, inputs)
        loss.backward()
        metrics = {k: float(v[-1]) for k, v in me._metrics["train"].items() if k != "num_tokens"}
        cases.append({"margin": use_margin, "center_rewards_coefficient": center, "loss": loss.item(),
                      "grad_rewards": leaf.grad.tolist(), "metrics": metrics})
    return {"trl_version": trl.__version__, "chosen": chosen.tolist(), "rejected": rejected.tolist(),
            "margin": margin.tolist(), "cases": cases}


def sft_case():
    """Completion-only SFT loss (prompt tokens labelled -100) and TRL's mean_token_accuracy on the chosen pairs."""
    peft_model = tiny_peft()
    seqs = [p + c for p, c, _ in PAIRS]
    masks = [[0] * len(p) + [1] * len(c) for p, c, _ in PAIRS]
    t = max(map(len, seqs))
    ids = torch.tensor([s + [PAD] * (t - len(s)) for s in seqs])
    cm = torch.tensor([m + [0] * (t - len(m)) for m in masks])
    labels = ids.masked_fill(cm == 0, -100)
    out = peft_model(input_ids=ids, labels=labels)
    out.loss.backward()
    # SFTTrainer.compute_loss: mean_token_accuracy over positions whose shifted label is not -100.
    preds = out.logits[:, :-1].argmax(-1)
    shift = labels[:, 1:]
    keep = shift != -100
    acc = ((preds == shift) & keep).sum().item() / keep.sum().item()
    save_file(lora_grads(peft_model), os.path.join(OUT, "sft.grads.safetensors"))
    print("sft", f"loss={out.loss.item():.6f}", f"acc={acc:.4f}")
    return {"trl_version": trl.__version__, "sequences": seqs, "completion_masks": masks, "loss": out.loss.item(),
            "mean_token_accuracy": acc}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    fixtures = [("dpo", dpo_cases), ("grpo", grpo_cases), ("grpo_accum2", lambda: grpo_cases(accumulation=2)),
                ("reward", reward_cases), ("sft", sft_case)]
    only = sys.argv[1:]
    for name, fn in fixtures:
        if only and name not in only:
            continue
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(fn(), f, indent=1)


if __name__ == "__main__":
    main()
