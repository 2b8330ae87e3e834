//! Bad input gives a clear error naming the file and field, never a panic.
use crate::common;

use kit::hub::ModelFiles;
use kit::model::{LoadOptions, Model, ModelConfig};

fn err_of(r: kit::Result<impl std::fmt::Debug>) -> String {
    r.expect_err("expected an error").to_string()
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = r#"{"model_type":"llama","vocab_size":32,"hidden_size":8,"intermediate_size":16,
 "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1}"#;

#[test]
fn config_errors_name_the_field() {
    let d = common::temp_dir("cfg");
    let p = write(&d, "config.json", GOOD);
    ModelConfig::from_config_json(&p).unwrap();

    let p = write(&d, "config.json", &GOOD.replace(r#""hidden_size":8,"#, ""));
    let e = err_of(ModelConfig::from_config_json(&p));
    assert!(
        e.contains("config.json") && e.contains("hidden_size") && e.contains("missing"),
        "{e}"
    );

    let p = write(
        &d,
        "config.json",
        &GOOD.replace(r#""hidden_size":8"#, r#""hidden_size":"eight""#),
    );
    let e = err_of(ModelConfig::from_config_json(&p));
    assert!(e.contains("hidden_size") && e.contains("integer"), "{e}");

    let p = write(&d, "config.json", &GOOD.replace("llama", "gpt2"));
    let e = err_of(ModelConfig::from_config_json(&p));
    assert!(e.contains("unsupported architecture `gpt2`"), "{e}");

    let p = write(
        &d,
        "config.json",
        &GOOD.replace(r#""num_key_value_heads":1"#, r#""num_key_value_heads":3"#),
    );
    let e = err_of(ModelConfig::from_config_json(&p));
    assert!(e.contains("num_key_value_heads"), "{e}");

    let p = write(&d, "config.json", "{\"model_type\": \"llama\",");
    let e = err_of(ModelConfig::from_config_json(&p));
    assert!(e.contains("invalid JSON"), "{e}");

    let e = err_of(ModelConfig::from_config_json(&d.join("nope.json")));
    assert!(e.contains("nope.json"), "{e}");
}

#[test]
fn truncated_gguf_names_the_tensor() {
    let src = common::real_model("smollm2-135m");
    let bytes = std::fs::read(&src).unwrap();
    let d = common::temp_dir("gguf");
    let p = d.join("cut.gguf");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(Model::from_files(
        "cut",
        ModelFiles::Gguf(p.clone()),
        &LoadOptions::default(),
    ));
    assert!(
        e.contains("cut.gguf") && e.contains("truncated") && e.contains("tensor `"),
        "{e}"
    );

    // Cut inside the header: still an error naming the file, not a panic.
    std::fs::write(&p, &bytes[..1000]).unwrap();
    let e = err_of(Model::from_files(
        "cut",
        ModelFiles::Gguf(p.clone()),
        &LoadOptions::default(),
    ));
    assert!(e.contains("cut.gguf"), "{e}");

    std::fs::write(&p, b"not a gguf at all").unwrap();
    let e = err_of(Model::from_files("cut", ModelFiles::Gguf(p), &LoadOptions::default()));
    assert!(e.contains("not a valid GGUF"), "{e}");
}

#[test]
fn unknown_model_lists_what_was_tried() {
    let hub = kit::hub::HubSettings {
        offline: true,
        ..kit::hub::HubSettings::from_env()
    };
    let e = err_of(kit::hub::resolve_with("no-such-model-alias", &hub));
    assert!(
        e.contains("no-such-model-alias") && e.contains("not a known alias"),
        "{e}"
    );
    let e = err_of(kit::hub::resolve_with("someone/not-cached", &hub));
    assert!(e.contains("Hugging Face cache") && e.contains("HF_HUB_OFFLINE"), "{e}");
}

#[test]
fn prompt_longer_than_context_is_refused() {
    let model = Model::load("smollm2-135m", &LoadOptions::default()).unwrap();
    let ctx = model.config().max_position_embeddings;
    let long = vec![1u32; ctx + 1];
    let e = err_of(model.generate_ids(&[long], &kit::generate::GenerationConfig::greedy(1), &mut |_| {}));
    assert!(e.contains("context"), "{e}");
    let e = err_of(model.generate_ids(&[vec![]], &kit::generate::GenerationConfig::greedy(1), &mut |_| {}));
    assert!(e.contains("empty"), "{e}");
    // A token id outside the vocabulary.
    let e = err_of(model.generate_ids(
        &[vec![1_000_000]],
        &kit::generate::GenerationConfig::greedy(1),
        &mut |_| {},
    ));
    assert!(e.contains("outside the vocabulary"), "{e}");
}

/// A copy of the tiny Llama fixture model, to break in different ways.
fn tiny_copy(name: &str) -> std::path::PathBuf {
    let src = common::fixtures().join("tiny").join("llama");
    let d = common::temp_dir(name);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), d.join(f)).unwrap();
    }
    d
}

#[test]
fn broken_safetensors_directories_name_the_file() {
    let d = tiny_copy("st-trunc");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() - 1000]).unwrap();
    let e = err_of(kit::model::WeightSource::safetensors_dir(&d).map(|_| ()));
    assert!(e.contains("model.safetensors") && e.contains("truncated"), "{e}");

    std::fs::write(d.join("model.safetensors"), &bytes[..4]).unwrap();
    let e = err_of(kit::model::WeightSource::safetensors_dir(&d).map(|_| ()));
    assert!(e.contains("model.safetensors") && e.contains("header"), "{e}");

    // A sharded index that lists a missing shard.
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    write(
        &d,
        "model.safetensors.index.json",
        r#"{"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}"#,
    );
    let e = err_of(kit::model::WeightSource::safetensors_dir(&d).map(|_| ()));
    assert!(
        e.contains("model-00001-of-00002.safetensors") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn weights_that_do_not_fit_the_config_name_the_tensor() {
    let d = tiny_copy("st-shape");
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 128", "\"intermediate_size\": 96");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let cfg = ModelConfig::from_config_json(&d.join("config.json")).unwrap();
    let mut src = kit::model::WeightSource::safetensors_dir(&d).unwrap();
    let e = err_of(
        kit::model::Decoder::load(&cfg, &mut src, &candle_core::Device::Cpu, candle_core::DType::F32).map(|_| ()),
    );
    assert!(
        e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("does not match the config"),
        "{e}"
    );
}

#[test]
fn tokenizer_larger_than_the_embedding_is_refused() {
    // The tiny model has 256 embedding rows; this SentencePiece vocabulary has ~400 tokens.
    let d = tiny_copy("vocab-mismatch");
    std::fs::copy(
        common::fixtures().join("tokenizer").join("sp_bpe.model"),
        d.join("tokenizer.model"),
    )
    .unwrap();
    let e = err_of(Model::load(d.to_str().unwrap(), &LoadOptions::default()));
    assert!(e.contains("tokenizer has") && e.contains("256 rows"), "{e}");
    std::fs::remove_file(d.join("tokenizer.model")).unwrap();
    let e = err_of(Model::load(d.to_str().unwrap(), &LoadOptions::default()));
    assert!(e.contains("no tokenizer.json or tokenizer.model"), "{e}");
}
