"""Tiny random-weight models of every family kit supports, with transformers' outputs as fixtures.

Run from the repository root:
    python tests/oracle/make_tiny_models.py
Writes tests/fixtures/tiny/<name>/{config.json, model.safetensors, expected.safetensors}.

Each model: vocab 256, hidden 64, 3 layers, 4 heads / 2 kv heads, head_dim 16, f32, eager attention.
Every parameter is re-drawn from N(0, 0.15) (norm weights too) so that each family switch changes the logits.
expected.safetensors holds:
  plain.input_ids (2, 12) i64, plain.logits (2, 12, 256) f32,
  plain.loss  — mean next-token cross-entropy over plain.input_ids,
  plain.embeds_grad (2, 12, 64) — d loss / d (raw embedding lookup output, before Gemma's sqrt(hidden) scale),
  padded.input_ids / padded.attention_mask / padded.position_ids (3, 12) i64 — left padding of 0, 3 and 7 tokens,
    position_ids = cumsum(mask) - 1 clamped at 0 (as generate() builds them),
  padded.logits (3, 12, 256) — logits at padded query positions are not meaningful; tests compare mask=1 positions.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import (Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig, GemmaConfig,
                          GemmaForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tiny")
COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-6,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)

MODELS = {
    "llama": (LlamaConfig, LlamaForCausalLM, dict(attention_bias=True, rope_theta=10000.0, tie_word_embeddings=False)),
    "llama_rope3": (LlamaConfig, LlamaForCausalLM, dict(
        rope_theta=500000.0, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16})),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(rope_theta=1000000.0, tie_word_embeddings=True)),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM, dict(rope_theta=1000000.0, tie_word_embeddings=False)),
    "gemma": (GemmaConfig, GemmaForCausalLM, dict(hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh")),
    "gemma2": (Gemma2Config, Gemma2ForCausalLM, dict(
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=4, query_pre_attn_scalar=24,
        hidden_activation="gelu_pytorch_tanh")),
    "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM, dict(
        sliding_window=4, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        rope_theta=1000000.0, rope_local_base_freq=10000.0, query_pre_attn_scalar=24,
        hidden_activation="gelu_pytorch_tanh")),
    "gemma3_linear_rope": (Gemma3TextConfig, Gemma3ForCausalLM, dict(
        sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_theta=1000000.0, rope_local_base_freq=10000.0, query_pre_attn_scalar=16,
        rope_scaling={"rope_type": "linear", "factor": 8.0}, hidden_activation="gelu_pytorch_tanh",
        final_logit_softcapping=None)),
}


def inputs(gen):
    plain = torch.randint(3, 256, (2, 12), generator=gen)
    padded = torch.randint(3, 256, (3, 12), generator=gen)
    mask = torch.ones(3, 12, dtype=torch.long)
    for row, pads in enumerate([0, 3, 7]):
        padded[row, :pads] = 0
        mask[row, :pads] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return plain, padded, mask, pos


def main():
    torch.manual_seed(0)
    for name, (cfg_cls, model_cls, extra) in MODELS.items():
        cfg = cfg_cls(**{**COMMON, **extra})
        cfg._attn_implementation = "eager"
        model = model_cls(cfg).eval()
        gen = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.15)
        out = os.path.join(ROOT, name)
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        for extra_file in ["generation_config.json"]:
            p = os.path.join(out, extra_file)
            if os.path.exists(p):
                os.remove(p)

        plain, padded, mask, pos = inputs(gen)
        with torch.no_grad():
            plain_logits = model(input_ids=plain).logits
            padded_logits = model(input_ids=padded, attention_mask=mask, position_ids=pos).logits

        # Gradient oracle: start from the raw lookup, apply Gemma's scale ourselves, pass inputs_embeds.
        raw = model.get_input_embeddings().weight[plain].detach().clone().requires_grad_(True)
        scaled = raw * torch.tensor(cfg.hidden_size ** 0.5, dtype=raw.dtype) if name.startswith("gemma") else raw
        logits = forward_from_scaled_embeds(model, name, scaled)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size), plain[:, 1:].reshape(-1))
        loss.backward()
        assert torch.allclose(logits.detach(), plain_logits, atol=1e-5), name

        save_file({
            "plain.input_ids": plain.contiguous(), "plain.logits": plain_logits.contiguous(),
            "plain.loss": loss.detach().reshape(1), "plain.embeds_grad": raw.grad.contiguous(),
            "padded.input_ids": padded.contiguous(), "padded.attention_mask": mask.contiguous(),
            "padded.position_ids": pos.contiguous(), "padded.logits": padded_logits.contiguous(),
        }, os.path.join(out, "expected.safetensors"), metadata={"transformers": transformers.__version__})
        print(name, "ok", f"loss={loss.item():.4f}")


def forward_from_scaled_embeds(model, name, scaled):
    """Run the model from embeddings that already carry Gemma's sqrt(hidden) scale.

    In transformers 5 every Gemma applies the scale inside its embedding module (GemmaTextScaledWordEmbedding),
    so inputs_embeds are used as given."""
    return model(inputs_embeds=scaled).logits


if __name__ == "__main__":
    sys.exit(main())
