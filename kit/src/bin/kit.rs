//! The `kit` command line: thin; parses flags into the same configs the library uses.
use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kit::generate::GenerationConfig;
use kit::model::{LoadOptions, Model};
use kit::sampling::SamplingParams;

#[derive(Parser)]
#[command(
    name = "kit",
    version,
    about = "Post-train small LLMs in Rust: QLoRA, SFT, DPO, GRPO, reward models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from one or more prompts (batched, streamed when there is one prompt).
    Generate(GenerateArgs),
    /// List the built-in model aliases and where they resolve.
    Models,
    /// Check and generate datasets.
    #[command(subcommand)]
    Data(kit::cli::data::DataCommand),
    /// Supervised fine-tuning with LoRA (TRL's SFTTrainer flags).
    Sft(kit::cli::train::SftArgs),
    /// Direct Preference Optimization with LoRA; the reference is the base with the adapter off.
    Dpo(kit::cli::train::DpoArgs),
    /// GRPO with built-in reward functions (and/or a trained reward model).
    Grpo(kit::cli::train::GrpoArgs),
    /// Train a reward model (Bradley–Terry) on preference pairs.
    Reward(kit::cli::train::RewardArgs),
    /// The main job: SFT then DPO on the shipped Japanese data, answers before/after, metrics and plots.
    Quickstart(kit::cli::quickstart::QuickstartArgs),
    /// The Rust Jupyter kernel with kit preloaded.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Open JupyterLab on the course notebooks (installs the kernel and Jupyter when missing).
    Notebook {
        #[arg(long, default_value = "notebooks")]
        dir: std::path::PathBuf,
    },
    /// Download models into the local cache ahead of time (aliases, hub ids).
    Fetch {
        /// Models to fetch; default: every built-in alias.
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KernelCommand {
    /// Install evcxr_jupyter if missing and register the "Rust (kit)" kernel.
    Install,
}

#[derive(Parser)]
struct GenerateArgs {
    /// Model alias (smollm2-135m, gemma3-270m), local directory/.gguf, or hub id.
    #[arg(long = "model", visible_alias = "model_name_or_path", default_value = "smollm2-135m")]
    model: String,
    /// A prompt; repeat the flag for a batch.
    #[arg(long = "prompt", required = true)]
    prompts: Vec<String>,
    /// Wrap each prompt as a user turn with the model's chat template.
    #[arg(long)]
    chat: bool,
    #[arg(long = "max_new_tokens", visible_alias = "max-new-tokens", default_value_t = 64)]
    max_new_tokens: usize,
    /// Sample instead of greedy decoding.
    #[arg(long = "do_sample", visible_alias = "do-sample")]
    do_sample: bool,
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    #[arg(long = "top_k", visible_alias = "top-k", default_value_t = 0)]
    top_k: usize,
    #[arg(long = "top_p", visible_alias = "top-p", default_value_t = 1.0)]
    top_p: f64,
    #[arg(
        long = "repetition_penalty",
        visible_alias = "repetition-penalty",
        default_value_t = 1.0
    )]
    repetition_penalty: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when this string appears (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Dequantize GGUF weights at load (exact transformers parity, more memory).
    #[arg(long)]
    dequantize: bool,
    /// Print per-token log-probabilities after each completion.
    #[arg(long)]
    logprobs: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Generate(a) => generate(a),
        Command::Kernel(KernelCommand::Install) => {
            let p = kit::cli::kernel::install()?;
            println!("kernel \"Rust (kit)\" registered: {}", p.kernel_json.display());
            println!("evcxr_jupyter: {}", p.evcxr_jupyter.display());
            println!("start-up commands: {}", p.config_dir.join("init.evcxr").display());
            println!("kit crate: {}", p.kit_crate.display());
            println!(
                "a notebook's first cell (`:dep kit = ...`) builds kit the first time (a few minutes); later notebooks reuse the build cache (seconds)"
            );
            Ok(())
        }
        Command::Notebook { dir } => Ok(kit::cli::kernel::notebook(&dir)?),
        Command::Sft(a) => kit::cli::train::sft(a).map(drop).map_err(Into::into),
        Command::Dpo(a) => kit::cli::train::dpo(a).map(drop).map_err(Into::into),
        Command::Grpo(a) => kit::cli::train::grpo(a).map(drop).map_err(Into::into),
        Command::Reward(a) => kit::cli::train::reward(a).map(drop).map_err(Into::into),
        Command::Quickstart(a) => kit::cli::quickstart::run(a).map(drop).map_err(Into::into),
        Command::Models => {
            for a in kit::hub::ALIASES {
                let cached = kit::hub::kit_home().join("models").join(a.gguf_file);
                let state = if cached.exists() {
                    format!("cached at {}", cached.display())
                } else {
                    "not downloaded yet".into()
                };
                println!("{:<14} {}\n{:<14} {state}", a.name, a.description, "");
            }
            Ok(())
        }
        Command::Data(cmd) => Ok(kit::cli::data::run(cmd, &mut std::io::stdout())?),
        Command::Fetch { names } => {
            let names = if names.is_empty() {
                kit::hub::ALIASES.iter().map(|a| a.name.to_string()).collect()
            } else {
                names
            };
            for n in names {
                let files = kit::hub::resolve(&n)?;
                println!("{n}: {files:?}");
            }
            Ok(())
        }
    }
}

fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    let opts = LoadOptions {
        dequantize: a.dequantize,
        ..Default::default()
    };
    let model = Model::load(&a.model, &opts).with_context(|| format!("loading model `{}`", a.model))?;
    let cfg = GenerationConfig {
        max_new_tokens: a.max_new_tokens,
        sampling: SamplingParams {
            do_sample: a.do_sample,
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            repetition_penalty: a.repetition_penalty,
        },
        seed: a.seed,
        stop_strings: a.stop,
        eos_token_ids: None,
        chat: a.chat,
    };
    let stream = a.prompts.len() == 1;
    if stream {
        print!("{}", a.prompts[0]);
        std::io::stdout().flush()?;
    }
    let t0 = std::time::Instant::now();
    let out = model.generate_stream(&a.prompts, &cfg, |ev| {
        if stream {
            print!("{}", ev.delta);
            let _ = std::io::stdout().flush();
        }
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let n_tokens: usize = out.iter().map(|g| g.token_ids.len()).sum();
    for (i, g) in out.iter().enumerate() {
        if stream {
            println!();
        } else {
            println!("=== [{i}] {}\n{}{}", g.prompt, g.prompt, g.text);
        }
        if a.logprobs {
            let toks: Vec<String> = g
                .token_ids
                .iter()
                .zip(&g.logprobs)
                .map(|(t, lp)| format!("{:?}:{lp:.3}", model.tokenizer.decode(&[*t], false).unwrap_or_default()))
                .collect();
            println!("logprobs: {}", toks.join(" "));
        }
    }
    eprintln!(
        "[{} tokens in {:.2}s, {:.1} tokens/s; finish: {:?}]",
        n_tokens,
        secs,
        n_tokens as f64 / secs,
        out.iter().map(|g| g.finish_reason).collect::<Vec<_>>()
    );
    Ok(())
}
