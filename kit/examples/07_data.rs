//! Notebook 07 as a program: data quality, quantity and distribution shift.
//! 1. The same DPO (notebook 03's recipe, from 02's SFT adapter, restored between runs) on clean pairs, on the noisy
//!    copy of the same pairs (25% of `pref_ja/noisy` have their labels swapped), and on 50% and 25% of the clean
//!    pairs, one epoch each; held-out accuracy (pref_ja dev + test, 49 pairs) of each run, in one table and chart.
//! 2. `kit data check` on a set the model wrote itself (sampled answers to `sft_ja/dev` prompts, split at random).
//! 3. Distribution shift: per-token log-probability of the model's own answer, of the dataset's answer and of a
//!    string it never writes (the dataset answer reversed), after SFT and after DPO.
//! `KIT_07_PAIRS=N` sets the clean pool (default 48). Run `cargo run --release --example 02_sft` first, then
//! `cargo run --release --example 07_data`.
use kit::prelude::*;
use kit::train::dpo::{prepare, PairExample};
use kit::train::Trainer;

/// Notebook 03's DPO recipe, one epoch over `pairs` pairs, evaluated at the end.
fn dpo_config(pairs: usize, output_dir: &str) -> DpoConfig {
    let steps = pairs.div_ceil(4);
    DpoConfig {
        args: TrainingArguments {
            output_dir: output_dir.into(),
            learning_rate: 2e-4,
            per_device_train_batch_size: 4,
            per_device_eval_batch_size: 8,
            max_steps: Some(steps),
            logging_steps: 1,
            eval_steps: Some(steps),
            seed: 42,
            ..Default::default()
        },
        beta: 0.1,
        max_length: Some(256),
        reference: DpoReference::Initial,
        ..Default::default()
    }
}

fn main() -> anyhow::Result<()> {
    let mut model = Model::load(
        "gemma3-270m",
        &LoadOptions {
            load_in_4bit: true,
            ..Default::default()
        },
    )?;
    let adapter = model.load_adapter("outputs/02_sft")?;
    let sft = adapter.snapshot()?;

    // --- 1. quality and quantity -------------------------------------------------------------------------------
    let clean_file = "datasets/pref_ja/train.jsonl";
    let noisy_file = "datasets/pref_ja/noisy/train.jsonl";
    let pool: usize = std::env::var("KIT_07_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke_mode() { 8 } else { 48 });
    // The same rows of both files (noisy/train.jsonl is train.jsonl with 25% of its pairs swapped): 3/4 of the pool
    // from unswapped rows and 1/4 from swapped ones, each part spread over the flaws, interleaved 3:1 so that the
    // pool and its first half and quarter keep the file's 25% noise.
    let flaws = read_column(clean_file, "flaw")?;
    let swapped = read_column(noisy_file, "swapped")?;
    let picked = keep_noise_rate(&flaws, &swapped, pool);
    let clean_rows = load_preference(clean_file, false)?.into_conversations();
    let noisy_rows = load_preference(noisy_file, false)?.into_conversations();
    let clean: Vec<_> = picked.iter().map(|&i| clean_rows[i].clone()).collect();
    let noisy: Vec<_> = picked.iter().map(|&i| noisy_rows[i].clone()).collect();
    let n_swapped = picked.iter().filter(|&&i| swapped[i] == "true").count();
    println!("pool: {pool} pairs; in its noisy copy {n_swapped} are swapped");

    let dev_file = "datasets/pref_ja/dev.jsonl";
    let test_file = "datasets/pref_ja/test.jsonl";
    let mut held_out_rows = load_preference(dev_file, false)?.into_conversations();
    held_out_rows.extend(load_preference(test_file, false)?.into_conversations());
    let mut held_out_flaws = read_column(dev_file, "flaw")?;
    held_out_flaws.extend(read_column(test_file, "flaw")?);

    // Every run's reference is the SFT model, so its log-probs are computed once, for all runs.
    let cfg = dpo_config(pool, "outputs/07_data");
    let dpo = Dpo::new(&model, cfg.clone());
    let score = |rows| -> kit::Result<Vec<PairExample>> {
        let mut examples = prepare(&model, rows, &cfg)?;
        dpo.precompute(&model, &adapter, &mut examples, 8)?;
        Ok(examples)
    };
    let started = std::time::Instant::now();
    let (clean, noisy, held_out) = (score(&clean)?, score(&noisy)?, score(&held_out_rows)?);
    println!("reference log-probs: {:.0} s", started.elapsed().as_secs_f64());

    let runs = [
        ("clean 100%", "clean_100", clean.clone()),
        ("noisy 100%", "noisy_100", noisy),
        ("clean 50%", "clean_50", clean[..pool / 2].to_vec()),
        ("clean 25%", "clean_25", clean[..pool / 4].to_vec()),
    ];
    let mut table = Table::new(&["run", "pairs", "steps", "held-out accuracy", "95% interval", "wall (s)"]);
    let mut accuracy = vec![];
    let mut after_dpo = None;
    for (name, dir, train) in runs {
        adapter.restore(&sft)?;
        let cfg = dpo_config(train.len(), &format!("outputs/07_data/{dir}"));
        let started = std::time::Instant::now();
        let mut trainer = Trainer::new(&model, &adapter, Dpo::new(&model, cfg.clone()), cfg.args.clone())
            .with_data(train.clone(), held_out.clone());
        trainer.train()?;
        let right: Vec<bool> = trainer.objective.eval_rewards.iter().map(|(c, r)| c > r).collect();
        let all = accuracy_by_group(&held_out_flaws, &right)
            .pop()
            .expect("an overall row");
        let (lo, hi) = wilson_interval(all.correct, all.total);
        table.push(&[
            name.to_string(),
            train.len().to_string(),
            cfg.args.max_steps.unwrap_or(0).to_string(),
            format!("{}/{} = {:.2}", all.correct, all.total, all.accuracy),
            format!("[{lo:.2}, {hi:.2}]"),
            format!("{:.0}", started.elapsed().as_secs_f64()),
        ]);
        accuracy.push((name, train.len(), all.accuracy));
        if name == "clean 100%" {
            after_dpo = Some(adapter.snapshot()?);
        }
    }
    println!("{table}");
    let clean_line: Vec<(f64, f64)> = accuracy
        .iter()
        .filter(|(name, _, _)| name.starts_with("clean"))
        .map(|&(_, n, a)| (n as f64, a))
        .rev()
        .collect();
    let noisy_point: Vec<(f64, f64)> = accuracy
        .iter()
        .filter(|(name, _, _)| name.starts_with("noisy"))
        .map(|&(_, n, a)| (n as f64, a))
        .collect();
    let chance = vec![(0.0, 0.5), (pool as f64, 0.5)];
    let chart = Chart::lines(
        &[
            ("clean pairs".to_string(), clean_line),
            ("noisy pairs (25% swapped)".to_string(), noisy_point),
            ("chance".to_string(), chance),
        ],
        "held-out accuracy after one epoch of DPO",
        "training pairs",
    )?;
    chart.save("outputs/07_data/accuracy.png")?;

    // --- 2. checking a set the model wrote ------------------------------------------------------------------------
    adapter.restore(&sft)?;
    let questions = read_column(dev_file, "prompt")?;
    let dataset_answers = read_column(dev_file, "chosen")?;
    let k = if smoke_mode() { 2 } else { 8 };
    // Two sampled answers per question, as a quick generated SFT set would be made, then a random 3:1 train/dev split.
    let twice: Vec<&String> = questions[..k].iter().chain(&questions[..k]).collect();
    let answers = model.generate_texts(&twice, &GenerationConfig::sample(96, 0.7, 7).with_chat(true))?;
    let rows: Vec<String> = twice
        .iter()
        .zip(&answers)
        .map(|(p, a)| serde_json::json!({ "prompt": p, "completion": a }).to_string())
        .collect();
    let order = stratified_take(
        (0..rows.len()).collect(),
        &vec![String::new(); rows.len()],
        rows.len(),
        3,
    );
    let (train_part, dev_part) = order.split_at(rows.len() * 3 / 4);
    let generated = std::path::PathBuf::from("outputs/07_data/generated");
    for (file, part) in [("train.jsonl", train_part), ("dev.jsonl", dev_part)] {
        let text: String = part.iter().map(|&i| format!("{}\n", rows[i])).collect();
        kit::io::write_atomic(generated.join(file), text.as_bytes())?;
    }
    let summary = kit::data::check(&[generated], None, &mut std::io::stdout())?;
    println!("problems found: {}", summary.problems);

    // --- 3. distribution shift ------------------------------------------------------------------------------------
    // For each held-out question: the SFT model's own greedy answer, the dataset's answer, and the dataset's answer
    // reversed (a string no model writes), scored as completions of the chat prompt.
    let k = if smoke_mode() { 2 } else { 8 };
    let own = model.generate_texts(&questions[..k], &GenerationConfig::greedy(96).with_chat(true))?;
    let mut texts: Vec<(&str, Vec<(String, String)>)> = vec![
        ("own greedy answer (SFT)", vec![]),
        ("dataset answer", vec![]),
        ("dataset answer reversed", vec![]),
    ];
    for (i, q) in questions[..k].iter().enumerate() {
        let prompt = model.tokenizer.apply_chat_template(&[Message::user(q)], true)?;
        texts[0].1.push((prompt.clone(), own[i].clone()));
        texts[1].1.push((prompt.clone(), dataset_answers[i].clone()));
        texts[2].1.push((prompt, dataset_answers[i].chars().rev().collect()));
    }
    let after_dpo = after_dpo.expect("the clean 100% run");
    let mut shift = Table::new(&["text", "mean log p per token, after SFT", "after DPO (clean 100%)"]);
    for (name, pairs) in &texts {
        adapter.restore(&sft)?;
        let before = mean_token_logprob(&model, pairs)?;
        adapter.restore(&after_dpo)?;
        let after = mean_token_logprob(&model, pairs)?;
        shift.push(&[name.to_string(), format!("{before:.2}"), format!("{after:.2}")]);
    }
    println!("{shift}");
    Ok(())
}

/// `n` row indices, 3 of every 4 from rows not swapped and 1 from swapped rows, each kind spread over the flaws.
fn keep_noise_rate(flaws: &[String], swapped: &[String], n: usize) -> Vec<usize> {
    let take = |want_swapped: bool, k: usize| {
        let rows: Vec<usize> = (0..flaws.len())
            .filter(|&i| (swapped[i] == "true") == want_swapped)
            .collect();
        let groups: Vec<String> = rows.iter().map(|&i| flaws[i].clone()).collect();
        stratified_take(rows, &groups, k, 42)
    };
    let (clean, flipped) = (take(false, n - n / 4), take(true, n / 4));
    let mut out = Vec::with_capacity(n);
    for (i, row) in clean.into_iter().enumerate() {
        out.push(row);
        if i % 3 == 2 {
            out.extend(flipped.get(i / 3).copied());
        }
    }
    out
}

/// Mean log-probability per completion token over (prompt, completion) pairs, in nats.
fn mean_token_logprob(model: &Model, pairs: &[(String, String)]) -> kit::Result<f64> {
    let (mut sum, mut count) = (0.0, 0);
    for (prompt, completion) in pairs {
        let scored = model.completion_token_log_probs(prompt, completion)?;
        sum += scored.iter().map(|t| t.logprob).sum::<f64>();
        count += scored.len();
    }
    Ok(sum / count.max(1) as f64)
}
