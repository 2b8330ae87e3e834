//! The CI smoke mode (`KIT_SMOKE=1`, `kit::smoke`) cuts what the library runs, not what a notebook asks for: the
//! `kit` binary is run with the variable set (setting it in this process would reach every test thread).
use crate::common;

use std::process::Command;

#[test]
fn smoke_mode_cuts_a_run_to_one_step_and_generation_to_its_cap() {
    let dir = common::temp_dir("smoke-mode");
    let data = dir.join("sft.jsonl");
    let rows: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "{{\"messages\": [{{\"role\": \"user\", \"content\": \"{i} たす 1 は？\"}}, \
                 {{\"role\": \"assistant\", \"content\": \"{} です。\"}}]}}",
                i + 1
            )
        })
        .collect();
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let model = common::real_model("smollm2-135m");
    let out_dir = dir.join("out");
    // (stdout, stderr) of a successful `kit ARGS` in the smoke mode.
    let kit = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kit"))
            .args(args)
            .env(kit::smoke::SMOKE_ENV, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "kit {args:?}: {stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    kit(&[
        "sft",
        "--model_name_or_path",
        model.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--eval_dataset",
        data.to_str().unwrap(),
        "--output_dir",
        out_dir.to_str().unwrap(),
        "--max_steps",
        "5",
        "--eval_steps",
        "1",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--lora_r",
        "4",
    ]);
    let log = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last_step = steps.iter().filter_map(|m| m["step"].as_f64()).fold(0.0, f64::max);
    assert_eq!(last_step, 1.0, "asked for 5 steps, the smoke mode runs 1: {log}");
    assert!(
        steps.iter().any(|m| m.get("eval_loss").is_some()),
        "the run still evaluates: {log}"
    );

    let (_, stderr) = kit(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Once upon a time",
        "--max_new_tokens",
        "64",
    ]);
    // The command reports "[N tokens in …; finish: [Length]]" on stderr.
    let n: usize = stderr
        .split('[')
        .find_map(|p| p.split_once(" tokens in ").and_then(|(n, _)| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no token count in {stderr:?}"));
    let cap = kit::smoke::SMOKE.max_new_tokens;
    assert!(
        n == cap || (n < cap && stderr.contains("Eos")),
        "asked for 64 new tokens, the smoke mode writes at most {cap}: {n} ({stderr:?})"
    );
}
