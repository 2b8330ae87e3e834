//! kit's minijinja rendering of chat templates equals transformers' (Jinja2) `apply_chat_template` on
//! 56 cases: SmolLM2's published template and three templates in the styles published models use.
//! Fixture: `tests/oracle/make_chat_template_fixtures.py`.
use crate::common;

use kit::tokenizer::{render_chat_template, Message};

#[test]
fn templates_render_like_transformers() {
    let p = common::fixtures().join("chat_templates.json");
    let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let (bos, eos) = (fx["bos_token"].as_str(), fx["eos_token"].as_str());
    let cases = fx["cases"].as_array().unwrap();
    let mut failures = vec![];
    for c in cases {
        let name = c["template"].as_str().unwrap();
        let template = fx["templates"][name].as_str().unwrap();
        let messages: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let got = render_chat_template(template, &messages, gen, bos, eos, &serde_json::Value::Null);
        match (&got, c.get("expected"), c.get("error")) {
            (Ok(text), Some(want), _) if text == want.as_str().unwrap() => {}
            (Err(e), None, Some(want)) if e.to_string().contains(want.as_str().unwrap()) => {}
            _ => failures.push(format!(
                "{name} gen={gen} {messages:?}\n  kit: {got:?}\n  transformers: {:?}",
                c.get("expected").or(c.get("error"))
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_chat_prompt_comes_from_its_gguf() {
    let path = common::real_model("smollm2-135m");
    let mut f = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let tok = kit::tokenizer::Tokenizer::from_gguf(&content, &path).unwrap();
    let text = tok.apply_chat_template(&[Message::user("Hi")], true).unwrap();
    assert!(
        text.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        "{text:?}"
    );
}

#[test]
fn template_errors_are_reported() {
    let e = render_chat_template(
        "{% for m in messages %}",
        &[],
        false,
        None,
        None,
        &serde_json::Value::Null,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not parse"), "{e}");
}
