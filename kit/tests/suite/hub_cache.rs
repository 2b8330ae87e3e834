//! Loading from a local directory and from the Hugging Face cache (`HF_HOME`) offline, end to end on the tiny
//! Llama fixture with a small word-level tokenizer.
use crate::common;

use kit::generate::GenerationConfig;
use kit::model::{LoadOptions, Model};

const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"<unk>":0,"<s>":1,"</s>":2,"ねこ":3,"は":4,"かわいい":5},"unk_token":"<unk>"}}"#;

fn populate(dir: &std::path::Path) {
    let src = common::fixtures().join("tiny").join("llama");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true}"#,
    )
    .unwrap();
}

#[test]
fn loads_from_a_directory_and_from_the_hf_cache_offline() {
    let root = common::temp_dir("hf-home");
    let local = root.join("local");
    populate(&local);
    let m = Model::load(local.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(m.tokenizer.encode("ねこ は", true).unwrap(), vec![1, 3, 4]);
    let g = m.generate(&["ねこ は"], &GenerationConfig::greedy(4)).unwrap();
    assert!(!g[0].token_ids.is_empty());

    // The HF cache layout: hub/models--org--name/{refs/main, snapshots/<rev>/...}.
    let repo = root.join("hub").join("models--kit-test--tiny-llama");
    populate(&repo.join("snapshots").join("abc123"));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
    // Explicit settings rather than HF_HOME: tests share one process, and the environment is process-wide.
    let hub = kit::hub::HubSettings {
        hf_cache: root.join("hub"),
        offline: true,
        ..kit::hub::HubSettings::from_env()
    };
    let files = kit::hub::resolve_with("kit-test/tiny-llama", &hub).unwrap();
    assert_eq!(files, kit::hub::ModelFiles::Dir(repo.join("snapshots").join("abc123")));
    let m2 = Model::from_files("kit-test/tiny-llama", files, &LoadOptions::default()).unwrap();
    // Same weights, same greedy continuation.
    let g2 = m2.generate(&["ねこ は"], &GenerationConfig::greedy(4)).unwrap();
    assert_eq!(g[0].token_ids, g2[0].token_ids);
}
