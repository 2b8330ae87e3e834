//! `kit quickstart` end to end on SmolLM2-135M and a few rows of the shipped data: every phase runs, the report
//! holds what it claims, and figures with a closed form agree with it.
use crate::common;

use kit_cli::quickstart::{run, QuickstartArgs};

/// The first `n` lines of each split of `datasets/<name>` in a temporary dataset folder.
fn few_rows(root: &std::path::Path, name: &str, n: usize) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets")
        .join(name);
    let dst = root.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for split in ["train", "dev"] {
        let text = std::fs::read_to_string(src.join(format!("{split}.jsonl"))).unwrap();
        let rows: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        // Rows from the start and the end, so a sorted file gives more than one kind of row.
        let picked: Vec<&str> = rows[..n / 2]
            .iter()
            .chain(&rows[rows.len() - (n - n / 2)..])
            .copied()
            .collect();
        std::fs::write(dst.join(format!("{split}.jsonl")), picked.join("\n") + "\n").unwrap();
    }
}

#[test]
fn quickstart_runs_every_phase_and_reports_held_out_figures() {
    let root = common::temp_dir("quickstart");
    few_rows(&root, "sft_ja", 4);
    few_rows(&root, "pref_ja", 4);
    let out = root.join("out");
    let report = run(QuickstartArgs {
        model_name_or_path: common::real_model("smollm2-135m").display().to_string(),
        datasets: root.clone(),
        output_dir: out.clone(),
        sft_steps: 1,
        sft_learning_rate: 1e-4,
        dpo_steps: 1,
        dpo_learning_rate: 1e-4,
        beta: 0.1,
        per_device_train_batch_size: 2,
        lora_r: 4,
        max_new_tokens: 4,
        num_prompts: 0,
        // The SFT phase also sees pref_ja/train's preferred answers (the path this flag adds).
        sft_on_chosen: true,
        seed: 1,
    })
    .unwrap();
    assert_eq!(report.held_out.len(), 4);
    assert_eq!(report.phases.len(), 3);
    for p in &report.phases {
        assert_eq!(p.answers.texts.len(), 4);
        assert!(p.answers.chrf.iter().all(|c| (0.0..=100.0).contains(c)));
    }
    // The one DPO step's loss is computed before its update, where the policy is the reference (the SFT model):
    // every implicit reward is 0 and the loss is ln 2.
    let first_loss = report
        .dpo
        .log_history
        .iter()
        .find_map(|m| m.get("loss").copied())
        .unwrap();
    assert!((first_loss - std::f64::consts::LN_2).abs() < 1e-5, "{first_loss}");
    // The per-flaw table counts every held-out pair once, and its `all` row is their total.
    let all = report.dpo_by_flaw.last().unwrap();
    assert_eq!((all.group.as_str(), all.total), ("all", 4));
    let by_flaw: usize = report.dpo_by_flaw[..report.dpo_by_flaw.len() - 1]
        .iter()
        .map(|g| g.total)
        .sum();
    assert_eq!(by_flaw, 4);
    // The trainer's last evaluation (one batch of 4 pairs) and the per-pair rewards rank the same pairs.
    let last_acc = report
        .dpo
        .log_history
        .iter()
        .rev()
        .find_map(|m| m.get("eval_rewards/accuracies").copied())
        .unwrap();
    assert!((last_acc - all.accuracy).abs() < 1e-9, "{last_acc} vs {}", all.accuracy);
    let md = std::fs::read_to_string(out.join("answers.md")).unwrap();
    for needle in [
        "## Outcome",
        "answers ending with end-of-turn",
        "DPO rewards/accuracies",
        "chrF",
        "## Answers",
    ] {
        assert!(md.contains(needle), "answers.md lacks {needle:?}");
    }
    assert!(out.join("sft/adapter_model.safetensors").exists() && out.join("dpo/adapter_model.safetensors").exists());
    std::fs::remove_dir_all(&root).ok();
}
