//! Notebook 07 as a program: data quality, quantity and distribution shift.
//! 1. The same DPO (notebook 03's recipe, from 02's SFT adapter, restored between runs, 12 steps × 4 pairs) on 48
//!    clean pairs, on the same pairs with 25% and 50% of their labels swapped, and on 24 of the clean pairs
//!    (2 epochs): dev accuracy and eval_loss of each run, in one table and two charts. The reference (the SFT model)
//!    scores the pairs once for all runs.
//! 2. `kit data check` on a set the model wrote itself (two sampled answers per question, split at random).
//! 3. Distribution shift: the same short SFT (from the base model) on `sft_ja`'s answers as written and written
//!    backwards (a text the model never produces): held-out loss per token before and after.
//!
//! Run `cargo run --release --example 02_sft` first, then `cargo run --release --example 07_data`.
use kit::prelude::*;

const STEPS: usize = 12;

/// Notebook 03's DPO recipe, 12 steps of 4 pairs, evaluated on dev every 6 steps.
fn dpo_config(output_dir: &str) -> DpoConfig {
    DpoConfig {
        args: TrainingArguments {
            output_dir: output_dir.into(),
            learning_rate: 2e-4,
            warmup_ratio: 0.1,
            per_device_train_batch_size: 4,
            per_device_eval_batch_size: 8,
            max_steps: Some(STEPS),
            logging_steps: 6,
            eval_steps: Some(6),
            seed: 42,
            ..Default::default()
        },
        beta: 0.1,
        max_length: Some(256),
        reference: DpoReference::Initial,
        ..Default::default()
    }
}

/// Notebook 02's SFT recipe, shortened to 8 steps.
fn sft_config(output_dir: &str) -> SftConfig {
    SftConfig {
        args: TrainingArguments {
            output_dir: output_dir.into(),
            learning_rate: 5e-4,
            warmup_ratio: 0.1,
            per_device_train_batch_size: 4,
            per_device_eval_batch_size: 8,
            max_steps: Some(8),
            logging_steps: 4,
            eval_steps: Some(8),
            eval_on_start: true,
            seed: 42,
            ..Default::default()
        },
        max_length: Some(256),
        ..Default::default()
    }
}

fn last(out: &TrainOutput, key: &str) -> f64 {
    out.series(key).last().map_or(f64::NAN, |p| p.1)
}

fn main() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
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
    let (train_file, dev_file) = ("datasets/pref_ja/train.jsonl", "datasets/pref_ja/dev.jsonl");
    let pool = stratified_take(
        load_preference(train_file, false)?.into_conversations(),
        &read_column(train_file, "flaw")?,
        48,
        42,
    );
    let pool = smoke_take(pool, 8);
    let dev = load_preference(dev_file, false)?.into_conversations();
    let dev_flaws = read_column(dev_file, "flaw")?;
    // Every run starts from the SFT adapter and takes it as the reference: its log-probs of the pairs are computed
    // once here, and swapping a scored pair's labels swaps them with it.
    let cfg = dpo_config("outputs/07_data");
    let pool = reference_scored(&model, &adapter, &pool, &cfg)?;
    let dev = reference_scored(&model, &adapter, &dev, &cfg)?;
    let (quarter, _) = swap_labels(&pool, 0.25, 7);
    let (half, _) = swap_labels(&pool, 0.5, 7);
    let n = pool.len();
    // (name, examples, pairs with the right label)
    let runs = [
        ("clean", pool.clone(), n),
        ("25% swapped", quarter, n - n / 4),
        ("50% swapped", half, n - n / 2),
        ("clean, half", pool[..n / 2].to_vec(), n / 2),
    ];
    let mut table = Table::new(&[
        "run",
        "pairs",
        "right labels",
        "dev accuracy",
        "95% interval",
        "vs clean (paired)",
        "eval_loss",
        "eval margin",
        "wall (s)",
    ]);
    let mut losses = vec![];
    let mut clean_right: Vec<f64> = vec![];
    let mut by_right_labels = vec![];
    for (i, (name, rows, right_labels)) in runs.iter().enumerate() {
        adapter.restore(&sft)?;
        let cfg = dpo_config(&format!("outputs/07_data/run_{i}"));
        let (out, ranked) = {
            let mut trainer = Trainer::from_examples(&model, &adapter, cfg, rows.clone(), dev.clone())?;
            let out = trainer.train()?;
            (out, trainer.held_out_ranking()?)
        };
        let right: Vec<f64> = ranked.iter().map(|&r| f64::from(u8::from(r))).collect();
        if clean_right.is_empty() {
            clean_right = right.clone();
        }
        let all = accuracy_by_group(&dev_flaws, &ranked).pop().expect("an overall row");
        let (lo, hi) = wilson_interval(all.correct, all.total);
        let d = paired_difference(&clean_right, &right);
        table.push(&[
            name.to_string(),
            rows.len().to_string(),
            right_labels.to_string(),
            format!("{}/{} = {:.2}", all.correct, all.total, all.accuracy),
            format!("[{lo:.2}, {hi:.2}]"),
            format!("{:+.2} [{:+.2}, {:+.2}]", d.mean, d.low, d.high),
            format!("{:.3}", last(&out, "eval_loss")),
            format!("{:.2}", last(&out, "eval_rewards/margins")),
            format!("{:.0}", out.train_runtime),
        ]);
        // At step 0 the policy is the reference: every implicit reward is 0 and the loss is ln 2.
        let mut loss = vec![(0.0, std::f64::consts::LN_2)];
        loss.extend(out.series("eval_loss"));
        losses.push((name.to_string(), loss));
        by_right_labels.push((*right_labels as f64, all.accuracy));
    }
    println!("{table}");
    let mut lines = losses.clone();
    lines.push((
        "ln 2 (no preference)".to_string(),
        vec![(0.0, std::f64::consts::LN_2), (STEPS as f64, std::f64::consts::LN_2)],
    ));
    Chart::lines(&lines, "dev eval_loss during DPO", "step")?.save("outputs/07_data/eval_loss.png")?;
    let noisy_line = vec![by_right_labels[2], by_right_labels[1], by_right_labels[0]];
    let clean_line = vec![by_right_labels[3], by_right_labels[0]];
    Chart::lines(
        &[
            ("48 pairs, 50 / 25 / 0% swapped".to_string(), noisy_line),
            ("clean pairs, 24 / 48".to_string(), clean_line),
        ],
        "dev accuracy against the number of rightly labelled pairs",
        "rightly labelled pairs",
    )?
    .save("outputs/07_data/accuracy.png")?;

    // --- 2. checking a set the model wrote ------------------------------------------------------------------------
    adapter.restore(&sft)?;
    let questions = read_column(dev_file, "prompt")?;
    let k = if smoke_mode() { 2 } else { 8 };
    // Two sampled answers per question, as a quick generated SFT set would be made, then a random 3:1 train/dev split.
    let twice: Vec<&String> = questions[..k].iter().chain(&questions[..k]).collect();
    let answers = model.generate_texts(&twice, &GenerationConfig::sample(96, 0.7, 7).with_chat(true))?;
    let rows: Vec<SftRow> = twice
        .iter()
        .zip(&answers)
        .map(|(q, a)| {
            SftRow::LanguageModeling(Turns::Chat(vec![
                Message::user(q.as_str()),
                Message::assistant(a.as_str()),
            ]))
        })
        .collect();
    let order = stratified_take(
        (0..rows.len()).collect(),
        &vec![String::new(); rows.len()],
        rows.len(),
        3,
    );
    let (train_part, dev_part) = order.split_at(rows.len() * 3 / 4);
    let generated = std::path::PathBuf::from("outputs/07_data/generated");
    write_jsonl(
        generated.join("train.jsonl"),
        train_part.iter().map(|&i| rows[i].to_json()),
    )?;
    write_jsonl(generated.join("dev.jsonl"), dev_part.iter().map(|&i| rows[i].to_json()))?;
    let summary = kit::data::check(&[generated], None, &mut std::io::stdout())?;
    println!("problems found: {}", summary.problems);

    // --- 3. distribution shift ------------------------------------------------------------------------------------
    // The same SFT from the base model (a fresh adapter each time) on sft_ja's answers as written, and written
    // backwards: a text the base model never produces. Held-out loss per token on dev in the same form.
    let backwards = |rows: Vec<(Origin, SftRow)>| -> Vec<(Origin, SftRow)> {
        rows.into_iter()
            .map(|(o, r)| (o, r.map_answers(|t| t.chars().rev().collect())))
            .collect()
    };
    let sft_train = smoke_take(load_sft("datasets/sft_ja/train.jsonl", false)?.rows, 8);
    let sft_dev = load_sft("datasets/sft_ja/dev.jsonl", false)?.rows;
    // A second copy of the base model (a model carries one adapter), its fresh adapter restored before each run.
    let mut base = Model::load(
        "gemma3-270m",
        &LoadOptions {
            load_in_4bit: true,
            ..Default::default()
        },
    )?;
    let fresh_adapter = base.attach_lora(&LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        init_seed: 42,
        ..Default::default()
    })?;
    let fresh = fresh_adapter.snapshot()?;
    let mut shift = Table::new(&["answers", "dev loss per token, base", "after 8 steps", "wall (s)"]);
    let mut curves = vec![];
    for (name, train, dev) in [
        ("as written", sft_train.clone(), sft_dev.clone()),
        ("written backwards", backwards(sft_train), backwards(sft_dev)),
    ] {
        fresh_adapter.restore(&fresh)?;
        let cfg = sft_config(&format!("outputs/07_data/sft_{}", name.replace(' ', "_")));
        let out = sft_trainer_from_rows(&base, &fresh_adapter, &train, &dev, &cfg)?.train()?;
        let loss = out.series("eval_loss");
        shift.push(&[
            name.to_string(),
            format!("{:.3}", loss[0].1),
            format!("{:.3}", loss[loss.len() - 1].1),
            format!("{:.0}", out.train_runtime),
        ]);
        curves.push((name.to_string(), loss));
    }
    println!("{shift}");
    Chart::lines(&curves, "dev loss per token during SFT", "step")?.save("outputs/07_data/shift.png")?;
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
