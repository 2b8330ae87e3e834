//! Notebook 01 as a program: a language model scores likelihood, not desirability. Per-token and per-sequence
//! log-probabilities of completions of 「ねこは好きですか？」, a ranking where a fluent but undesired continuation comes
//! first, the cumulative log-probabilities as a chart (outputs/01_lm_vs_desirable/cumulative_logp.svg and .png), and
//! base vs instruction-tuned generation. Run: `cargo run --release --example 01_lm_vs_desirable`.
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
    let prompt = "ねこは好きですか？\n";

    // Token by token: log p(token | prompt and the tokens before it).
    let mut per_token = Table::new(&["補完", "トークン", "log p", "p"]);
    let mut totals = vec![];
    for c in ["ねこはかわいい。", "ねこはかわいくない。"] {
        let toks = model.completion_token_log_probs(prompt, c)?;
        for t in &toks {
            per_token.push(&[
                c.to_string(),
                t.token.clone(),
                format!("{:.2}", t.logprob),
                format!("{:.3}", t.logprob.exp()),
            ]);
        }
        let total: f64 = toks.iter().map(|t| t.logprob).sum();
        per_token.push(&[c.to_string(), "（合計）".into(), format!("{total:.2}"), String::new()]);
        totals.push(total);
    }
    println!("{per_token}");
    let gap = totals[0] - totals[1];
    println!("差 {gap:.2} nats: p の比は e^{gap:.2} ≈ {} 倍", times(gap));

    // Completions ranked by log p(completion | prompt).
    let candidates = [
        ("はい、大好きです。", "答えている"),
        ("はい、ねこはかわいいです。", "答えている"),
        ("ねこは好きですか？", "質問をくり返すだけ"),
        ("いぬは好きですか？", "話をそらす"),
        ("知りません。", "はぐらかす"),
        ("うるさい。", "失礼"),
    ];
    let mut scored = vec![];
    for (c, kind) in candidates {
        let toks = model.completion_token_log_probs(prompt, c)?;
        let total: f64 = toks.iter().map(|t| t.logprob).sum();
        scored.push((c, kind, total, toks));
    }
    scored.sort_by(|a, b| b.2.total_cmp(&a.2));
    let best = scored[0].2;
    let mut ranking = Table::new(&[
        "順位",
        "補完",
        "どんな返事か",
        "log p",
        "トークン数",
        "1 トークンあたり",
        "1 位の何分の 1 か",
    ]);
    for (i, (c, kind, total, toks)) in scored.iter().enumerate() {
        ranking.push(&[
            (i + 1).to_string(),
            c.to_string(),
            kind.to_string(),
            format!("{total:.2}"),
            toks.len().to_string(),
            format!("{:.2}", total / toks.len() as f64),
            format!("1/{}", times(best - total)),
        ]);
    }
    println!("{ranking}");
    // Two gaps as ratios: the top continuation against the best answer, and a rude reply against a polite answer.
    let logp = |c: &str| scored.iter().find(|s| s.0 == c).map_or(f64::NAN, |s| s.2);
    for (a, b) in [
        ("ねこは好きですか？", "はい、大好きです。"),
        ("うるさい。", "はい、ねこはかわいいです。"),
    ] {
        let gap = logp(a) - logp(b);
        println!(
            "「{a}」は「{b}」より {gap:.2} nats 高い: e^{gap:.2} ≈ {} 倍ありそう",
            times(gap)
        );
    }

    // The same log-probabilities summed token by token.
    let lines: Vec<(String, Vec<(f64, f64)>)> = scored
        .iter()
        .map(|(c, _, _, toks)| {
            let mut sum = 0.0;
            let pts = toks
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    sum += t.logprob;
                    ((i + 1) as f64, sum)
                })
                .collect();
            (c.to_string(), pts)
        })
        .collect();
    let chart = Chart::lines(&lines, "「ねこは好きですか？」への補完の累積対数確率", "トークン")?;
    chart.save("outputs/01_lm_vs_desirable/cumulative_logp.svg")?;
    println!("{chart}");

    // What the base model writes after the question itself.
    let cont = model.generate(&[prompt], &GenerationConfig::greedy(24))?;
    println!("{prompt}{}", cont[0].text);

    // Base vs instruction-tuned: the base model continues a question; the instruct model answers it.
    let question = "日本で一番高い山はどこですか。";
    let base = model.generate(&[question], &GenerationConfig::greedy(32))?;
    println!("{question}{}", base[0].text);
    let instruct = Model::load("smollm2-135m", &LoadOptions::default())?;
    let q = "What is the highest mountain in Japan?";
    let answer = instruct.generate(&[q], &GenerationConfig::greedy(32).with_chat(true))?;
    println!("{}", answer[0].text.trim());
    Ok(())
}

/// e^gap: how many times likelier a gap of `gap` nats is (one decimal below 10).
fn times(gap: f64) -> String {
    let r = gap.exp();
    if r < 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}
