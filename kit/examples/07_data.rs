//! Notebook 07's first part as a program (work in progress: the notebook, its lesson, the `kit data check` of a
//! generated set and the distribution-shift part are not written yet): the same DPO (notebook 03's recipe, from 02's
//! SFT adapter, restored between runs) on clean pairs, on the noisy copy with 25% of its labels swapped, and on 50%
//! and 25% of the clean pairs, one epoch each; held-out accuracy (pref_ja dev + test, 49 pairs) of each run.
//! `KIT_07_PAIRS=N` uses N pairs for the 100% runs (default: all 268; about 12 s per step of 4 pairs on 2 cores).
//! Run `cargo run --release --example 02_sft` first, then `cargo run --release --example 07_data`.
use kit::prelude::*;

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

    // Held-out pairs: dev and test together (49), evaluated once at the end of each run; nothing is chosen on them.
    let dev_file = "datasets/pref_ja/dev.jsonl";
    let test_file = "datasets/pref_ja/test.jsonl";
    let mut held_out = load_preference(dev_file, false)?.into_conversations();
    held_out.extend(load_preference(test_file, false)?.into_conversations());
    let mut held_out_flaws = read_column(dev_file, "flaw")?;
    held_out_flaws.extend(read_column(test_file, "flaw")?);

    let clean_file = "datasets/pref_ja/train.jsonl";
    let noisy_file = "datasets/pref_ja/noisy/train.jsonl";
    let flaws = read_column(clean_file, "flaw")?;
    let clean = load_preference(clean_file, false)?.into_conversations();
    let noisy = load_preference(noisy_file, false)?.into_conversations();
    let n = clean.len();
    let pairs: usize = std::env::var("KIT_07_PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(n);
    let runs = [
        ("clean 100%", stratified_take(clean.clone(), &flaws, pairs, 42)),
        ("noisy 100% (25% swapped)", stratified_take(noisy, &flaws, pairs, 42)),
        ("clean 50%", stratified_take(clean.clone(), &flaws, pairs / 2, 42)),
        ("clean 25%", stratified_take(clean, &flaws, pairs / 4, 42)),
    ];
    let mut results = Table::new(&["run", "pairs", "steps", "held-out accuracy", "wall (s)"]);
    for (name, train) in &runs {
        adapter.restore(&sft)?;
        let steps = train.len().div_ceil(4);
        let cfg = DpoConfig {
            args: TrainingArguments {
                output_dir: format!(
                    "outputs/07_data/{}",
                    name.split(' ').take(2).collect::<Vec<_>>().join("_")
                )
                .into(),
                learning_rate: 2e-4,
                warmup_ratio: 0.1,
                per_device_train_batch_size: 4,
                per_device_eval_batch_size: 8,
                max_steps: Some(steps),
                logging_steps: 4,
                eval_steps: Some(steps),
                seed: 42,
                ..Default::default()
            },
            beta: 0.1,
            max_length: Some(256),
            reference: DpoReference::Initial,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let mut trainer = dpo_trainer_from_rows(&model, &adapter, train, &held_out, &cfg)?;
        trainer.train()?;
        let right: Vec<bool> = trainer.objective.eval_rewards.iter().map(|(c, r)| c > r).collect();
        let acc = accuracy_by_group(&held_out_flaws, &right);
        let all = acc.last().unwrap();
        results.push(&[
            name.to_string(),
            train.len().to_string(),
            steps.to_string(),
            format!("{}/{} = {:.2}", all.correct, all.total, all.accuracy),
            format!("{:.0}", started.elapsed().as_secs_f64()),
        ]);
        println!("{results}");
    }
    Ok(())
}
