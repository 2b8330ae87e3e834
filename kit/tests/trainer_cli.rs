//! The trainer CLI's settings: TRL flag names, config file precedence, unknown keys refused, dataset folders; and
//! bad training data reported with file, line and field.
mod common;

use clap::Parser;
use kit::cli::train::{build_config, dataset_files, DpoArgs, GrpoArgs, SftArgs};
use kit::train::dpo::{DpoConfig, DpoLossType};
use kit::train::grpo::{GrpoConfig, GrpoLossType, ScaleRewards};
use kit::train::sft::SftConfig;

#[derive(Parser)]
struct Wrap<T: clap::Args> {
    #[command(flatten)]
    inner: T,
}

fn parse<T: clap::Args>(args: &[&str]) -> T {
    Wrap::<T>::try_parse_from(std::iter::once("kit").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"))
        .inner
}

#[test]
fn flags_use_trl_names_and_override_the_config_file() {
    let dir = common::temp_dir("cli-config");
    let file = dir.join("dpo.json");
    std::fs::write(
        &file,
        r#"{"beta": 0.3, "learning_rate": 1e-4, "loss_type": "ipo", "max_steps": 7}"#,
    )
    .unwrap();
    let a: DpoArgs = parse(&[
        "--dataset",
        "x.jsonl",
        "--config",
        file.to_str().unwrap(),
        "--learning_rate",
        "5e-5",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "4",
        "--lr_scheduler_type",
        "cosine",
    ]);
    let cfg: DpoConfig = build_config(a.common.config.as_deref(), &a).unwrap();
    assert_eq!(cfg.beta, 0.3); // from the file
    assert_eq!(cfg.loss_type, DpoLossType::Ipo);
    assert_eq!(cfg.args.learning_rate, 5e-5); // the flag wins
    assert_eq!(cfg.args.max_steps, Some(7));
    assert_eq!(cfg.args.per_device_train_batch_size, 2);
    assert_eq!(cfg.args.gradient_accumulation_steps, 4);
    assert_eq!(cfg.args.lr_scheduler_type, kit::train::optim::SchedulerType::Cosine);
    assert_eq!(cfg.label_smoothing, 0.0); // TRL's default, untouched
}

#[test]
fn defaults_are_trls() {
    let a: SftArgs = parse(&["--dataset", "x.jsonl"]);
    let sft: SftConfig = build_config(None, &a).unwrap();
    assert_eq!(sft.args.learning_rate, 2e-5);
    assert_eq!(sft.args.per_device_train_batch_size, 8);
    assert_eq!(sft.args.num_train_epochs, 3.0);
    assert!(sft.completion_only_loss);
    let g: GrpoArgs = parse(&["--dataset", "x.jsonl"]);
    let grpo: GrpoConfig = build_config(None, &g).unwrap();
    assert_eq!((grpo.num_generations, grpo.beta, grpo.epsilon), (8, 0.0, 0.2));
    assert_eq!(grpo.loss_type, GrpoLossType::Dapo);
    assert_eq!(grpo.scale_rewards, ScaleRewards::Group);
    let d: DpoConfig = DpoConfig::default();
    assert_eq!((d.beta, d.args.learning_rate), (0.1, 1e-6));
}

#[test]
fn unknown_config_keys_are_named() {
    let dir = common::temp_dir("cli-unknown");
    let file = dir.join("c.json");
    std::fs::write(&file, r#"{"learning_rte": 1e-4}"#).unwrap();
    let a: SftArgs = parse(&["--dataset", "x.jsonl", "--config", file.to_str().unwrap()]);
    let e = build_config::<SftConfig>(a.common.config.as_deref(), &a)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.json") && e.contains("learning_rte") && e.contains("unknown"),
        "{e}"
    );
    std::fs::write(&file, r#"{"beta": "high"}"#).unwrap();
    let a: DpoArgs = parse(&["--dataset", "x.jsonl", "--config", file.to_str().unwrap()]);
    let e = build_config::<DpoConfig>(a.common.config.as_deref(), &a)
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid type") || e.contains("beta"), "{e}");
}

#[test]
fn a_dataset_folder_means_train_and_dev_splits() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/pref_ja");
    let a: DpoArgs = parse(&["--dataset", root.to_str().unwrap()]);
    let (train, eval) = dataset_files(&a.common).unwrap();
    assert!(train.ends_with("pref_ja/train.jsonl"));
    assert!(eval.unwrap().ends_with("pref_ja/dev.jsonl"));
    let a: DpoArgs = parse(&["--dataset", "/nonexistent/data.jsonl"]);
    let e = dataset_files(&a.common).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/data.jsonl") && e.contains("not found"), "{e}");
}

#[test]
fn bad_training_rows_name_file_line_and_field() {
    let dir = common::temp_dir("cli-bad-rows");
    let model = common::tiny_model("llama");
    let file = dir.join("pref.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\": \"t5 t6\", \"chosen\": \"t7\", \"rejected\": \"t8\"}\n{\"prompt\": \"t5\", \"chosen\": \"t7\"}\n",
    )
    .unwrap();
    let adapter = common::tiny_model("llama").attach_lora(&Default::default()).unwrap();
    let cfg = DpoConfig {
        args: kit::train::TrainingArguments {
            output_dir: dir.join("out"),
            max_steps: Some(1),
            disable_tqdm: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = kit::train::dpo::train_dpo(&model, &adapter, &file, None, &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pref.jsonl:2") && e.contains("`rejected`") && e.contains("missing"),
        "{e}"
    );

    std::fs::write(
        &file,
        "{\"prompt\": \"t5\", \"chosen\": \"t7\", \"rejected\": \"t8\"}\n{\"prompt\": \"t5\", \"chosen\n",
    )
    .unwrap();
    let e = kit::train::dpo::train_dpo(&model, &adapter, &file, None, &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pref.jsonl") && e.contains("line 2") && e.contains("invalid JSON"),
        "{e}"
    );
}
