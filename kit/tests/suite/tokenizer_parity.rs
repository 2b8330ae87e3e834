//! Token ids equal transformers' on 60 strings (Japanese, full-width, emoji, code, whitespace runs, ...) for the
//! GGUF tokenizers of SmolLM2 (byte-level BPE) and Gemma 3 (SentencePiece BPE), and for SentencePiece
//! `tokenizer.model` files (unigram and BPE) loaded as transformers loads a directory without tokenizer.json.
//! Fixtures: `tests/oracle/make_tokenizer_fixtures.py`.
use crate::common;
use crate::common::json_ids as ids;

use candle_core::quantized::gguf_file;
use kit::tokenizer::Tokenizer;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = common::fixtures().join("tokenizer").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn gguf_tokenizer(alias: &str) -> Tokenizer {
    let path = common::real_model(alias);
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    Tokenizer::from_gguf(&content, &path).unwrap()
}

fn check(tok: &Tokenizer, name: &str) {
    let fx = fixture(name);
    let rows = fx["strings"].as_array().unwrap();
    assert!(rows.len() >= 50);
    let mut failures = vec![];
    for r in rows {
        let text = r["text"].as_str().unwrap();
        let with = tok.encode(text, true).unwrap();
        let without = tok.encode(text, false).unwrap();
        if with != ids(&r["ids"]) || without != ids(&r["ids_no_special"]) {
            failures.push(format!(
                "{text:?}: kit {without:?} / {with:?}, transformers {:?} / {:?}",
                r["ids_no_special"], r["ids"]
            ));
            continue;
        }
        let decoded = tok.decode(&without, true).unwrap();
        if decoded != r["decoded"].as_str().unwrap() {
            failures.push(format!(
                "{text:?}: decodes to {decoded:?}, transformers {:?}",
                r["decoded"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} strings differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers() {
    check(&gguf_tokenizer("smollm2-135m"), "smollm2");
}

#[test]
fn gemma3_gguf_tokenizer_matches_transformers() {
    check(&gguf_tokenizer("gemma3-270m"), "gemma3");
}

fn sp_dir(kind: &str) -> std::path::PathBuf {
    let d = common::temp_dir(&format!("sp-{kind}"));
    std::fs::copy(
        common::fixtures().join("tokenizer").join(format!("sp_{kind}.model")),
        d.join("tokenizer.model"),
    )
    .unwrap();
    std::fs::write(
        d.join("tokenizer_config.json"),
        r#"{"tokenizer_class": "LlamaTokenizer", "legacy": false, "add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}"#,
    )
    .unwrap();
    d
}

#[test]
fn sentencepiece_unigram_model_matches_transformers() {
    check(&Tokenizer::from_dir(&sp_dir("unigram")).unwrap(), "sp_unigram");
}

#[test]
fn sentencepiece_bpe_model_matches_transformers() {
    check(&Tokenizer::from_dir(&sp_dir("bpe")).unwrap(), "sp_bpe");
}

#[test]
fn broken_tokenizer_files_give_clear_errors() {
    let d = common::temp_dir("sp-bad");
    let good = std::fs::read(common::fixtures().join("tokenizer").join("sp_bpe.model")).unwrap();
    let p = d.join("tokenizer.model");
    std::fs::write(&p, &good[..good.len() / 3]).unwrap();
    let e = Tokenizer::from_sentencepiece_model(&p).unwrap_err().to_string();
    assert!(e.contains("tokenizer.model") && e.contains("truncated"), "{e}");
    std::fs::write(&p, b"").unwrap();
    let e = Tokenizer::from_sentencepiece_model(&p).unwrap_err().to_string();
    assert!(e.contains("not a valid SentencePiece model"), "{e}");
    let e = Tokenizer::from_dir(&common::temp_dir("empty-dir"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tokenizer.json or tokenizer.model"), "{e}");
}
