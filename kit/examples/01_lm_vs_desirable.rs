//! Notebook 01 as a program: sentence log-probabilities (a language model scores fluency, not desirability) and base
//! vs instruction-tuned generation. Run: `cargo run --release --example 01_lm_vs_desirable`.
use kit::prelude::*;

fn main() -> anyhow::Result<()> {
    // On a T4 (build with --features cuda), change this one line to a 0.5B–3B model, e.g. "Qwen/Qwen2.5-0.5B".
    let model_id = "gemma3-270m";
    let model = Model::load(
        model_id,
        &LoadOptions {
            load_in_4bit: true,
            ..Default::default()
        },
    )?;
    let pairs = [
        ("ねこはかわいい。", "ねこはかわいくない。"),
        ("富士山は日本で一番高い山です。", "富士山は日本で一番低い山です。"),
        ("水は0度で凍ります。", "水は10度で凍ります。"),
        ("ご質問ありがとうございます。", "質問の意味がわかりません。"),
    ];
    let mut table = Table::new(&["文", "log p(文)", "トークン数"]);
    for (a, b) in pairs {
        for s in [a, b] {
            let n = model.tokenizer.encode(s, false)?.len();
            table.push(&[s.to_string(), format!("{:.2}", model.log_prob(s)?), n.to_string()]);
        }
    }
    println!("{table}");

    let prompt = "日本で一番高い山はどこですか。";
    let base = model.generate(&[prompt], &GenerationConfig::greedy(32))?;
    println!("{prompt}{}", base[0].text);

    let instruct = Model::load("smollm2-135m", &LoadOptions::default())?;
    let q = "What is the highest mountain in Japan?";
    let answer = instruct.generate(&[q], &GenerationConfig::greedy(32).with_chat(true))?;
    println!("{}", answer[0].text.trim());
    Ok(())
}
