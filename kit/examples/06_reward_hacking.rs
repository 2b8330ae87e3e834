//! Notebook 06 as a program: reward hacking under a naive reward, and KL regularisation. Starting from notebook 02's
//! SFT adapter, GRPO trains the keyword-summary task (`keyword_summary_ja`, with a fourth keyword no passage contains)
//! on a reward that only checks that the keywords appear; a stricter gold score (the passage's keywords used in
//! sentences, no repetition, the absent keyword left out) is logged beside it with weight 0. Two runs against the SFT
//! model (`GrpoReference::Initial`): β = 0.001, then β = 0.5 with a KL budget of 0.2; proxy, gold and KL per step, and
//! held-out answers with their scores.
//! Run `cargo run --release --example 02_sft` first, then `cargo run --release --example 06_reward_hacking`.
//! `KIT_06_STEPS`, `KIT_06_LR` change the recipe (dev experiments).
use kit::prelude::*;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Mean proxy and gold scores of greedy answers to `rows` (the same functions GRPO logs), and how many answers show
/// a hack sign (`hack_signs`).
fn judge(model: &Model, rows: &[(Origin, PromptRow)]) -> anyhow::Result<(f64, f64, usize, Vec<String>)> {
    let prompts: Vec<String> = rows
        .iter()
        .map(|(_, r)| match &r.prompt {
            Turns::Text(t) => t.clone(),
            Turns::Chat(m) => m[0].content.clone(),
        })
        .collect();
    let answers = model.generate_texts(&prompts, &GenerationConfig::greedy(64).with_chat(true))?;
    let columns: Vec<_> = rows.iter().map(|(_, r)| r.columns.clone()).collect();
    let input = RewardInput {
        prompts: &prompts,
        completions: &answers,
        columns: &columns,
    };
    let mean = |v: Vec<f32>| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
    let proxy = mean(keyword_reward().score(&input)?);
    let gold = mean(keyword_gold_reward().score(&input)?);
    let listed = rows
        .iter()
        .zip(&answers)
        .filter(|((_, row), a)| {
            let keywords = kit::data::keywords::keywords_of(&row.columns);
            !hack_signs(a, row.columns["summary"].as_str(), &keywords)
                .flags()
                .is_empty()
        })
        .count();
    Ok((proxy, gold, listed, answers))
}

fn config(dir: &str, steps: usize, lr: f64, beta: f64, kl_budget: Option<f64>) -> GrpoConfig {
    GrpoConfig {
        args: TrainingArguments {
            output_dir: dir.into(),
            learning_rate: lr,
            per_device_train_batch_size: 16,
            max_steps: Some(steps),
            logging_steps: 1,
            seed: 42,
            ..Default::default()
        },
        num_generations: 4,
        max_completion_length: 48,
        beta,
        reference: GrpoReference::Initial,
        kl_budget,
        reward_weights: Some(vec![1.0, 0.0]),
        chat: true,
        ..Default::default()
    }
}

fn main() -> anyhow::Result<()> {
    let steps: usize = env_or("KIT_06_STEPS", 8);
    let lr: f64 = env_or("KIT_06_LR", 3e-4);
    // A keyword no passage contains: the naive reward pays for forcing it in.
    let extra = Some("宇宙");
    let train = keyword_summary_prompts("datasets/keyword_summary_ja/train.jsonl", extra)?;
    let dev = keyword_summary_prompts("datasets/keyword_summary_ja/dev.jsonl", extra)?;

    let mut model = Model::load(
        "gemma3-270m",
        &LoadOptions {
            load_in_4bit: true,
            ..Default::default()
        },
    )?;
    let adapter = model.load_adapter("outputs/02_sft")?;
    let start = adapter.snapshot()?;
    let (p, g, l, answers) = judge(&model, &dev)?;
    println!(
        "after SFT, dev: proxy {p:.3}, gold {g:.3}, hack signs {l}/{}",
        dev.len()
    );
    for a in answers.iter().take(3) {
        println!("  {}", a.replace('\n', " "));
    }

    for (beta, budget) in [(0.001, None), (0.5, Some(0.2))] {
        adapter.restore(&start)?;
        let dir = format!("outputs/06_reward_hacking/beta_{beta}");
        let out = grpo_trainer_from_rows(
            &model,
            &adapter,
            &train,
            &[],
            vec![keyword_reward(), keyword_gold_reward()],
            &config(&dir, steps, lr, beta, budget),
        )?
        .train()?;
        let fmt = |k: &str| -> String {
            out.series(k)
                .iter()
                .map(|(_, v)| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("β = {beta}: proxy {}", fmt("rewards/keywords/mean"));
        println!("β = {beta}: gold  {}", fmt("rewards/keywords_in_sentences/mean"));
        println!("β = {beta}: kl    {}", fmt("kl"));
        let (p, g, l, answers) = judge(&model, &dev)?;
        println!(
            "β = {beta}, dev: proxy {p:.3}, gold {g:.3}, hack signs {l}/{}",
            dev.len()
        );
        for a in answers.iter().take(3) {
            println!("  {}", a.replace('\n', " "));
        }
    }
    Ok(())
}
