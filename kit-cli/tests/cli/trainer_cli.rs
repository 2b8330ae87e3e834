//! The trainer command lines: TRL's flag names and spellings, flags made from the config structs (every field, with
//! its doc), config file precedence, unknown keys refused, bad values named, dataset folders; and bad training data
//! reported with file, line and field.
use crate::common;

use clap::{CommandFactory, Parser};
use kit::train::dpo::{DpoConfig, DpoLossType};
use kit::train::grpo::{GrpoConfig, GrpoLossType, ScaleRewards};
use kit::train::optim::SchedulerType;
use kit::train::reward_model::RewardConfig;
use kit::train::sft::SftConfig;
use kit_cli::settings::{settings, TrainerConfig};
use kit_cli::train::{dataset_files, DpoArgs, GrpoArgs, RewardArgs, SftArgs};
use kit_cli::{Cli, Command};

/// `kit <args>` parsed, or clap's message.
fn try_parse(args: &[&str]) -> Result<Command, String> {
    Cli::try_parse_from(std::iter::once("kit").chain(args.iter().copied()))
        .map(|c| c.command)
        .map_err(|e| e.to_string())
}

fn sft(args: &[&str]) -> SftArgs {
    match try_parse(&[&["sft", "--dataset", "x.jsonl"], args].concat()) {
        Ok(Command::Sft(a)) => a,
        Ok(_) => unreachable!(),
        Err(e) => panic!("{e}"),
    }
}

fn dpo(args: &[&str]) -> DpoArgs {
    match try_parse(&[&["dpo", "--dataset", "x.jsonl"], args].concat()) {
        Ok(Command::Dpo(a)) => a,
        Ok(_) => unreachable!(),
        Err(e) => panic!("{e}"),
    }
}

fn grpo(args: &[&str]) -> GrpoArgs {
    match try_parse(&[&["grpo", "--dataset", "x.jsonl"], args].concat()) {
        Ok(Command::Grpo(a)) => a,
        Ok(_) => unreachable!(),
        Err(e) => panic!("{e}"),
    }
}

/// The error of a command line, whether clap or the config refuses it.
fn error_of(args: &[&str]) -> String {
    match try_parse(args) {
        Err(e) => e,
        Ok(Command::Sft(a)) => a.config().map(drop).unwrap_err().to_string(),
        Ok(Command::Dpo(a)) => a.config().map(drop).unwrap_err().to_string(),
        Ok(Command::Grpo(a)) => a.config().map(drop).unwrap_err().to_string(),
        Ok(_) => unreachable!(),
    }
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
    let cfg: DpoConfig = dpo(&[
        "--config",
        file.to_str().unwrap(),
        "--learning_rate",
        "5e-5",
        "--per_device_train_batch_size",
        "2",
        "--gradient-accumulation-steps", // HfArgumentParser takes the kebab-case spelling too
        "4",
        "--lr_scheduler_type",
        "cosine",
    ])
    .config()
    .unwrap();
    assert_eq!(cfg.beta, 0.3); // from the file
    assert_eq!(cfg.loss_type, DpoLossType::Ipo);
    assert_eq!(cfg.args.learning_rate, 5e-5); // the flag wins
    assert_eq!(cfg.args.max_steps, Some(7));
    assert_eq!(cfg.args.per_device_train_batch_size, 2);
    assert_eq!(cfg.args.gradient_accumulation_steps, 4);
    assert_eq!(cfg.args.lr_scheduler_type, SchedulerType::Cosine);
    assert_eq!(cfg.label_smoothing, 0.0); // TRL's default, untouched
    assert_eq!(cfg.args.output_dir, std::path::PathBuf::from("outputs/dpo"));
}

#[test]
fn defaults_are_trls() {
    let sft: SftConfig = sft(&[]).config().unwrap();
    assert_eq!(sft.args.learning_rate, 2e-5);
    assert_eq!(sft.args.per_device_train_batch_size, 8);
    assert_eq!(sft.args.num_train_epochs, 3.0);
    assert!(sft.completion_only_loss);
    let grpo: GrpoConfig = grpo(&[]).config().unwrap();
    assert_eq!((grpo.num_generations, grpo.beta, grpo.epsilon), (8, 0.0, 0.2));
    assert_eq!(grpo.loss_type, GrpoLossType::Dapo);
    assert_eq!(grpo.scale_rewards, ScaleRewards::Group);
    let d: DpoConfig = dpo(&[]).config().unwrap();
    assert_eq!((d.beta, d.args.learning_rate), (0.1, 1e-6));
}

/// The `kit sft|dpo|grpo|reward ...` lines of the README's shell block, continuation lines joined.
fn readme_command_lines() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let joined = readme.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| {
            ["kit sft ", "kit dpo ", "kit grpo ", "kit reward "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| l.split_whitespace().skip(1).map(String::from).collect())
        .collect()
}

/// `value` as the command line spells it, compared with a config's JSON value.
fn same_value(json: &serde_json::Value, flag_value: &str) -> bool {
    match json {
        serde_json::Value::Number(n) => flag_value.parse::<f64>().is_ok_and(|v| Some(v) == n.as_f64()),
        serde_json::Value::String(s) => s == flag_value,
        serde_json::Value::Bool(b) => flag_value.parse::<bool>().is_ok_and(|v| v == *b),
        _ => false,
    }
}

#[test]
fn the_readmes_command_lines_parse_and_set_their_fields() {
    let lines = readme_command_lines();
    assert_eq!(lines.len(), 4, "the README shows one line per trainer: {lines:?}");
    for line in lines {
        let args: Vec<&str> = line.iter().map(String::as_str).collect();
        let config = match try_parse(&args) {
            Ok(Command::Sft(a)) => serde_json::to_value(a.config().unwrap()),
            Ok(Command::Dpo(a)) => serde_json::to_value(a.config().unwrap()),
            Ok(Command::Grpo(a)) => serde_json::to_value(a.config().unwrap()),
            Ok(Command::Reward(a)) => serde_json::to_value(a.config().unwrap()),
            Ok(_) => unreachable!(),
            Err(e) => panic!("README line `kit {}`: {e}", line.join(" ")),
        }
        .unwrap();
        // Every trainer setting on the line (flags with a value) lands in its field; the model, data and reward
        // flags are not config fields.
        let mut checked = 0;
        for pair in args.windows(2) {
            let (Some(key), value) = (pair[0].strip_prefix("--"), pair[1]) else {
                continue;
            };
            if value.starts_with("--") {
                continue;
            }
            if let Some(field) = config.get(key) {
                assert!(
                    same_value(field, value),
                    "README `kit {}`: {key} is {field}, not {value}",
                    line.join(" ")
                );
                checked += 1;
            }
        }
        assert!(checked >= 1, "README `kit {}` sets no trainer setting", line.join(" "));
    }
}

#[test]
fn a_full_dpo_command_line_sets_every_field() {
    let cfg = dpo(&[
        "--model_name_or_path",
        "gemma3-270m",
        "--output_dir",
        "outputs/03_dpo_cli",
        "--learning_rate",
        "5e-4",
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "20",
        "--beta",
        "0.1",
        "--max_length",
        "192",
        "--logging_steps",
        "5",
        "--eval_steps",
        "10",
        "--eval_on_start",
    ])
    .config()
    .unwrap();
    assert_eq!(cfg.args.output_dir, std::path::PathBuf::from("outputs/03_dpo_cli"));
    assert_eq!(
        (cfg.args.max_steps, cfg.max_length, cfg.args.eval_steps),
        (Some(20), Some(192), Some(10))
    );
    assert!(cfg.args.eval_on_start);
    // A bare boolean flag is true; with a value, Python's spellings.
    assert!(!sft(&["--eval_on_start", "False"]).config().unwrap().args.eval_on_start);
    let s = sft(&["--resume_from_checkpoint", "--max_length", "none"])
        .config()
        .unwrap();
    assert_eq!(s.args.resume_from_checkpoint.as_deref(), Some("latest"));
    assert_eq!(s.max_length, None);
    let g: GrpoConfig = grpo(&["--reward_weights", "1,0.5", "--chat"]).config().unwrap();
    assert_eq!(g.reward_weights, Some(vec![1.0, 0.5]));
    assert!(g.chat);
    let g: GrpoConfig = grpo(&["--reward_weights", "2", "-0.5"]).config().unwrap();
    assert_eq!(g.reward_weights, Some(vec![2.0, -0.5]));
}

#[test]
fn enum_values_are_spelled_as_in_trl() {
    // clap's derived names were kebab case (constant-with-warmup, dr-grpo, keep-end): TRL's were refused.
    let s = sft(&[
        "--lr_scheduler_type",
        "constant_with_warmup",
        "--truncation_mode",
        "keep_end",
    ])
    .config()
    .unwrap();
    assert_eq!(s.args.lr_scheduler_type, SchedulerType::ConstantWithWarmup);
    assert_eq!(s.truncation_mode, kit::data::TruncationMode::KeepEnd);
    for (name, kind) in [
        ("cosine_with_restarts", SchedulerType::CosineWithRestarts),
        ("polynomial", SchedulerType::Polynomial),
        ("inverse_sqrt", SchedulerType::InverseSqrt),
    ] {
        assert_eq!(
            sft(&["--lr_scheduler_type", name])
                .config()
                .unwrap()
                .args
                .lr_scheduler_type,
            kind
        );
    }
    assert_eq!(
        grpo(&["--loss_type", "dr_grpo"]).config().unwrap().loss_type,
        GrpoLossType::DrGrpo
    );
    assert_eq!(
        dpo(&["--loss_type", "hinge"]).config().unwrap().loss_type,
        DpoLossType::Hinge
    );
    let e = error_of(&["sft", "--dataset", "x", "--lr_scheduler_type", "warmup_stable_decay"]);
    assert!(
        e.contains("--lr_scheduler_type") && e.contains("constant_with_warmup"),
        "{e}"
    );
}

#[test]
fn scale_rewards_takes_trls_booleans() {
    for (v, want) in [
        ("false", ScaleRewards::None),
        ("False", ScaleRewards::None),
        ("true", ScaleRewards::Group),
        ("none", ScaleRewards::None),
        ("batch", ScaleRewards::Batch),
    ] {
        assert_eq!(
            grpo(&["--scale_rewards", v]).config().unwrap().scale_rewards,
            want,
            "{v}"
        );
    }
    let dir = common::temp_dir("cli-scale");
    let file = dir.join("g.json");
    std::fs::write(&file, r#"{"scale_rewards": false}"#).unwrap();
    let g = grpo(&["--config", file.to_str().unwrap()]).config().unwrap();
    assert_eq!(g.scale_rewards, ScaleRewards::None);
    let e = error_of(&["grpo", "--dataset", "x", "--scale_rewards", "std"]);
    assert!(e.contains("--scale_rewards") && e.contains("`std`"), "{e}");
}

#[test]
fn max_steps_minus_one_means_epochs_as_in_transformers() {
    // `--max_steps -1` was "unexpected argument '-1'"; in a file, "expected usize".
    assert_eq!(sft(&["--max_steps", "-1"]).config().unwrap().args.max_steps, None);
    assert_eq!(
        sft(&["--max_steps", "-1", "--max_steps", "3"])
            .config()
            .unwrap()
            .args
            .max_steps,
        Some(3)
    );
    let dir = common::temp_dir("cli-max-steps");
    let file = dir.join("c.json");
    std::fs::write(&file, r#"{"max_steps": -1}"#).unwrap();
    assert_eq!(
        sft(&["--config", file.to_str().unwrap()])
            .config()
            .unwrap()
            .args
            .max_steps,
        None
    );
    let e = error_of(&["sft", "--dataset", "x", "--max_steps", "-2"]);
    assert!(e.contains("--max_steps") && e.contains("-1"), "{e}");
    // Other negative numbers are values too, and then the config refuses them by name.
    let e = error_of(&["sft", "--dataset", "x", "--warmup_steps", "-3"]);
    assert!(e.contains("--warmup_steps") && e.contains("-3"), "{e}");
}

#[test]
fn bad_values_name_the_flag() {
    let e = error_of(&["sft", "--dataset", "x", "--learning_rate", "abc"]);
    assert!(e.contains(r#"--learning_rate: expected a number, got "abc""#), "{e}");
    // NaN became JSON null: "invalid type: null, expected f64" for beta, silently unset for epsilon_high.
    let e = error_of(&["dpo", "--dataset", "x", "--beta", "nan"]);
    assert!(e.contains(r#"--beta: expected a finite number, got "nan""#), "{e}");
    let e = error_of(&["grpo", "--dataset", "x", "--epsilon_high", "NaN"]);
    assert!(e.contains("--epsilon_high: expected a finite number"), "{e}");
    let e = error_of(&["grpo", "--dataset", "x", "--num_generations", "2.5"]);
    assert!(
        e.contains(r#"--num_generations: expected an integer, got "2.5""#),
        "{e}"
    );
    let e = error_of(&["sft", "--dataset", "x", "--eval_on_start", "maybe"]);
    assert!(
        e.contains(r#"--eval_on_start: expected true or false, got "maybe""#),
        "{e}"
    );
    let e = error_of(&["sft", "--dataset", "x", "--beta", "0.1"]);
    assert!(e.contains("--beta"), "DPO's flag is not SFT's: {e}");
}

#[test]
fn unknown_config_keys_are_named() {
    let dir = common::temp_dir("cli-unknown");
    let file = dir.join("c.json");
    std::fs::write(&file, r#"{"learning_rte": 1e-4}"#).unwrap();
    let e = sft(&["--config", file.to_str().unwrap()])
        .config()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.json") && e.contains("learning_rte") && e.contains("unknown"),
        "{e}"
    );
    std::fs::write(&file, r#"{"beta": "high"}"#).unwrap();
    let e = dpo(&["--config", file.to_str().unwrap()])
        .config()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.json") && e.contains("`beta`") && e.contains("invalid type"),
        "{e}"
    );
}

/// Every config field is a flag with a help text; nothing else is.
fn every_field_is_a_documented_flag<C: TrainerConfig>(sub: &str) {
    let mut keys: Vec<String> = kit_cli::settings::defaults::<C>().keys().cloned().collect();
    let settings = settings::<C>();
    let mut names: Vec<String> = settings.iter().map(|s| s.name.clone()).collect();
    keys.sort();
    names.sort();
    assert_eq!(names, keys, "kit {sub}: flags vs config keys");
    for s in &settings {
        assert!(s.doc.len() > 10, "kit {sub} --{}: the field has no doc comment", s.name);
    }
    let mut cmd = Cli::command();
    let help = cmd.find_subcommand_mut(sub).unwrap().render_long_help().to_string();
    for s in &settings {
        assert!(
            help.contains(&format!("--{} ", s.name)),
            "kit {sub} --help lacks --{}",
            s.name
        );
    }
}

#[test]
fn every_config_field_is_a_documented_flag() {
    Cli::command().debug_assert(); // no flag defined twice
    every_field_is_a_documented_flag::<SftConfig>("sft");
    every_field_is_a_documented_flag::<DpoConfig>("dpo");
    every_field_is_a_documented_flag::<GrpoConfig>("grpo");
    every_field_is_a_documented_flag::<RewardConfig>("reward");
    let mut cmd = Cli::command();
    let help = cmd.find_subcommand_mut("dpo").unwrap().render_long_help().to_string();
    assert!(help.contains("Strength of the pull towards the reference"), "{help}");
    assert!(help.contains("[possible values: sigmoid, hinge, ipo]"), "{help}");
    assert!(
        help.contains("[default: 1e-6]") && help.contains("[default: outputs/dpo]"),
        "{help}"
    );
    let r: RewardArgs = match try_parse(&["reward", "--dataset", "x", "--center_rewards_coefficient", "0.01"]) {
        Ok(Command::Reward(a)) => a,
        _ => unreachable!(),
    };
    assert_eq!(r.config().unwrap().center_rewards_coefficient, Some(0.01));
}

#[test]
fn a_dataset_folder_means_train_and_dev_splits() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../datasets/pref_ja");
    let a = dpo(&["--dataset", root.to_str().unwrap()]);
    let (train, eval) = dataset_files(&a.common).unwrap();
    assert!(train.ends_with("pref_ja/train.jsonl"));
    assert!(eval.unwrap().ends_with("pref_ja/dev.jsonl"));
    let a = dpo(&["--dataset", "/nonexistent/data.jsonl"]);
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
