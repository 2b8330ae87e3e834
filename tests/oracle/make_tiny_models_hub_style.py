"""Build tiny random decoders with transformers and record their outputs as an oracle for kit.

For each architecture kit supports, this writes under tests/fixtures/tiny_hub/<name>/:
  config.json           hub-style config (rope_theta / rope_scaling / rope_local_base_freq keys)
  model.safetensors     f32 weights
  expected.safetensors  inputs and transformers' outputs (see tests/fixtures/tiny_hub/README.md)

Run from the repository root:
  /work/cache/oracle-venv/bin/python tests/oracle/make_tiny_models_hub_style.py

Everything is seeded, so a rerun with the same library versions rewrites identical files.
"""

import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tiny_hub")

VOCAB = 256
SEQ = 12
PAD_ID = 0
# Left padding per row of the padded batch: no pads, 3 pads, 7 pads.
LEFT_PADS = [0, 3, 7]
INIT_STD = 0.15

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    pad_token_id=PAD_ID,
    bos_token_id=1,
    eos_token_id=2,
)

LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}


def specs():
    """(name, model class, config, edits to the saved config.json).

    The edits turn transformers 5's `rope_parameters` block back into the keys that configs on the
    Hub use (rope_theta, rope_scaling, rope_local_base_freq), which is what kit reads. Each model
    is reloaded from the edited file afterwards, so the fixture outputs come from what the file says.
    """
    out = []
    out.append((
        "llama",
        LlamaForCausalLM,
        LlamaConfig(**COMMON, attention_bias=True, tie_word_embeddings=False, rope_theta=10000.0),
        {"rope_theta": 10000.0},
    ))
    out.append((
        "llama_rope3",
        LlamaForCausalLM,
        LlamaConfig(**COMMON, tie_word_embeddings=True, rope_theta=500000.0, rope_scaling=dict(LLAMA3_SCALING)),
        {"rope_theta": 500000.0, "rope_scaling": dict(LLAMA3_SCALING)},
    ))
    # Qwen configs on the Hub carry a sliding_window that is switched off by use_sliding_window=false;
    # keep that trap in the fixture (transformers drops the window on load, so must kit).
    qwen_window = {"sliding_window": 4, "max_window_layers": 1, "use_sliding_window": False, "layer_types": None}
    out.append((
        "qwen2",
        Qwen2ForCausalLM,
        Qwen2Config(**{k: v for k, v in COMMON.items() if k != "head_dim"}, tie_word_embeddings=True,
                    rope_theta=1000000.0),
        {"rope_theta": 1000000.0, **qwen_window},
    ))
    out.append((
        "qwen3",
        Qwen3ForCausalLM,
        Qwen3Config(**COMMON, tie_word_embeddings=False, rope_theta=1000000.0),
        {"rope_theta": 1000000.0, **qwen_window},
    ))
    out.append((
        "gemma",
        GemmaForCausalLM,
        GemmaConfig(**COMMON, hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True, rope_theta=10000.0),
        {"rope_theta": 10000.0},
    ))
    out.append((
        "gemma2",
        Gemma2ForCausalLM,
        Gemma2Config(**COMMON, tie_word_embeddings=True, rope_theta=10000.0, attn_logit_softcapping=50.0,
                     final_logit_softcapping=30.0, sliding_window=4, query_pre_attn_scalar=24),
        # Older Gemma 2 configs have no layer_types: even layers slide. Drop it to exercise that default.
        {"rope_theta": 10000.0, "layer_types": None},
    ))
    out.append((
        "gemma3",
        Gemma3ForCausalLM,
        Gemma3TextConfig(**COMMON, tie_word_embeddings=True, sliding_window=4, query_pre_attn_scalar=24,
                         layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                         rope_theta=1000000.0, rope_local_base_freq=10000.0),
        {"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "_sliding_window_pattern": None},
    ))
    out.append((
        "gemma3_linear_rope",
        Gemma3ForCausalLM,
        Gemma3TextConfig(**COMMON, tie_word_embeddings=True, sliding_window=4, query_pre_attn_scalar=24,
                         sliding_window_pattern=2, rope_theta=1000000.0, rope_local_base_freq=10000.0,
                         rope_scaling={"rope_type": "linear", "factor": 8.0}),
        # No layer_types: the layer kinds come from sliding_window_pattern=2 (sliding, full, sliding).
        {"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
         "rope_scaling": {"rope_type": "linear", "factor": 8.0},
         "sliding_window_pattern": 2, "_sliding_window_pattern": None, "layer_types": None},
    ))
    return out


def inputs(gen):
    ids = torch.randint(3, VOCAB, (len(LEFT_PADS), SEQ), generator=gen)
    mask = torch.ones_like(ids)
    for row, pads in enumerate(LEFT_PADS):
        ids[row, :pads] = PAD_ID
        mask[row, :pads] = 0
    # What generate() passes: positions count real tokens only, pads sit at position 0.
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    plain = torch.randint(3, VOCAB, (2, SEQ), generator=gen)
    return ids, mask, pos, plain


def embed_scale(model):
    """The factor HF multiplies embedding rows by (sqrt(hidden) for Gemma, else 1), in weight dtype."""
    emb = model.get_input_embeddings()
    scale = getattr(emb, "embed_scale", None)
    if scale is None:
        return None
    return scale.to(emb.weight.dtype)


def write_config(path, edits):
    with open(path) as f:
        cfg = json.load(f)
    cfg.pop("rope_parameters", None)
    for k, v in edits.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def build(name, cls, config, edits, seed):
    out_dir = os.path.join(ROOT, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = cls(config).eval()

    # Re-initialise every parameter (norms and biases included) so that each one moves the output:
    # with default init, Gemma norms are 0 and biases are 0, which would hide (1+w) vs w and bias bugs.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * INIT_STD)

    model.save_pretrained(out_dir, safe_serialization=True)
    gen_cfg = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)
    write_config(os.path.join(out_dir, "config.json"), edits)

    # Reload from the edited file: the oracle must describe what the committed files mean.
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    assert type(reloaded) is cls, (name, type(reloaded))
    assert reloaded.config.rope_parameters == model.config.rope_parameters, (
        name, reloaded.config.rope_parameters, model.config.rope_parameters)
    kinds0, kinds1 = getattr(model.config, "layer_types", None), getattr(reloaded.config, "layer_types", None)
    assert kinds0 == kinds1, (name, kinds0, kinds1)
    assert getattr(reloaded.config, "sliding_window", None) == getattr(model.config, "sliding_window", None), name
    sd0, sd1 = model.state_dict(), reloaded.state_dict()
    assert sd0.keys() == sd1.keys(), name
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), (name, k)
    if config.tie_word_embeddings:
        assert reloaded.lm_head.weight.data_ptr() == reloaded.get_input_embeddings().weight.data_ptr(), name
    model = reloaded

    ids, mask, pos, plain = inputs(torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        padded_logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
        plain_logits = model(input_ids=plain, attention_mask=torch.ones_like(plain), use_cache=False).logits

    # Sanity: the padded run must differ from a run where the pads are attended to (else the mask
    # would be untested), and row 0 (no pads) must agree with an unbatched run.
    with torch.no_grad():
        row0 = model(input_ids=ids[:1], use_cache=False).logits
        no_mask = model(input_ids=ids, use_cache=False).logits
    assert torch.allclose(row0[0], padded_logits[0], atol=1e-5), name
    assert not torch.allclose(no_mask[2, -1], padded_logits[2, -1], atol=1e-3), name

    # Gradient oracle. `raw` is the plain embedding lookup E[ids] (before Gemma's sqrt(hidden) factor).
    # transformers 5 applies that factor inside the embedding module, so passing inputs_embeds skips
    # it; we apply it ourselves, exactly as the module does, and check the logits match the ids path.
    weight = model.get_input_embeddings().weight
    raw = F.embedding(plain, weight).detach().requires_grad_(True)
    scale = embed_scale(model)
    embeds = raw * scale if scale is not None else raw
    logits = model(inputs_embeds=embeds, attention_mask=torch.ones_like(plain), use_cache=False).logits
    assert torch.allclose(logits, plain_logits, atol=1e-6, rtol=0), name
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), plain[:, 1:].reshape(-1))
    model.zero_grad()
    loss.backward()

    tensors = {
        "padded.input_ids": ids.to(torch.int64),
        "padded.attention_mask": mask.to(torch.int64),
        "padded.position_ids": pos.to(torch.int64),
        "padded.logits": padded_logits.float().contiguous(),
        "plain.input_ids": plain.to(torch.int64),
        "plain.logits": plain_logits.float().contiguous(),
        "plain.loss": loss.detach().float().reshape(()),
        "plain.embeds_grad": raw.grad.float().contiguous(),
    }
    meta = {"transformers": transformers.__version__, "torch": torch.__version__, "seed": str(seed),
            "embed_scale": str(float(scale)) if scale is not None else "1.0"}
    # One metadata key: safetensors writes several keys in hash order, which would make reruns differ byte-wise.
    save_file(tensors, os.path.join(out_dir, "expected.safetensors"), metadata={"oracle": json.dumps(meta, sort_keys=True)})
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"{name:20s} loss={loss.item():.5f} |grad|={raw.grad.norm().item():.5f} "
          f"layers={getattr(model.config, 'layer_types', None)} dir={size / 1024:.0f} KiB")


def rerun_changed(name, mutate):
    """Largest |logit change| at real (mask=1) positions of the padded batch when one config value changes."""
    from safetensors.torch import load_file

    out_dir = os.path.join(ROOT, name)
    cfg = transformers.AutoConfig.from_pretrained(out_dir)
    mutate(cfg)
    model = AutoModelForCausalLM.from_pretrained(out_dir, config=cfg, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    e = load_file(os.path.join(out_dir, "expected.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=e["padded.input_ids"], attention_mask=e["padded.attention_mask"],
                       position_ids=e["padded.position_ids"], use_cache=False).logits
    real = e["padded.attention_mask"].bool()
    return (logits - e["padded.logits"])[real].abs().max().item()


def set_rope(layer_type, **kv):
    def mutate(cfg):
        params = cfg.rope_parameters[layer_type] if layer_type else cfg.rope_parameters
        params.update(kv)
    return mutate


# Each feature a fixture is meant to cover must move the recorded logits by far more than f32
# noise (~1e-5), or a decoder that ignores the feature would still pass.
SENSITIVITY = [
    ("gemma2", "attn_logit_softcapping off", lambda c: setattr(c, "attn_logit_softcapping", None)),
    ("gemma2", "final_logit_softcapping off", lambda c: setattr(c, "final_logit_softcapping", None)),
    ("gemma2", "sliding_window 4 -> 100", lambda c: setattr(c, "sliding_window", 100)),
    ("gemma2", "query_pre_attn_scalar 24 -> 16", lambda c: setattr(c, "query_pre_attn_scalar", 16)),
    ("gemma3", "sliding_window 4 -> 5", lambda c: setattr(c, "sliding_window", 5)),
    ("gemma3", "sliding_window 4 -> 3", lambda c: setattr(c, "sliding_window", 3)),
    ("gemma3", "local rope_theta 1e4 -> 1e6", set_rope("sliding_attention", rope_theta=1e6)),
    ("gemma3", "global rope_theta 1e6 -> 1e4", set_rope("full_attention", rope_theta=1e4)),
    ("gemma3_linear_rope", "linear scaling off", set_rope("full_attention", rope_type="default", factor=None)),
    ("llama_rope3", "llama3 scaling off", lambda c: setattr(c, "rope_parameters",
                                                            {"rope_type": "default", "rope_theta": 500000.0})),
    ("llama", "rope_theta 1e4 -> 1e6", set_rope(None, rope_theta=1e6)),
    ("qwen2", "rope_theta 1e6 -> 1e4", set_rope(None, rope_theta=1e4)),
    ("gemma3", "gelu tanh -> exact", lambda c: setattr(c, "hidden_activation", "gelu")),
]


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(ROOT, exist_ok=True)
    for i, (name, cls, config, edits) in enumerate(specs()):
        build(name, cls, config, edits, seed=1000 + i)
    print("sensitivity (max |logit change| at real positions):")
    for name, what, mutate in SENSITIVITY:
        change = rerun_changed(name, mutate)
        print(f"  {name:20s} {what:32s} {change:.4g}")
        assert change > 5e-4, (name, what, change)
    return 0


if __name__ == "__main__":
    sys.exit(main())
