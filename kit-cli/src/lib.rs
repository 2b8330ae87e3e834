//! The `kit` command line: flags in, library calls out. The library (`kit`) knows nothing of it, so a notebook's
//! `:dep kit` builds neither clap nor a Ctrl-C handler.
//!
//! The trainer subcommands take their settings' flags from the config structs themselves (`settings`, `flags`,
//! `config`); the rest (`generate`, `data`, `kernel`, `quickstart`) are hand-written clap arguments.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod config;
pub mod data;
pub mod flags;
pub mod generate;
pub mod kernel;
pub mod progress;
pub mod quickstart;
pub mod settings;
pub mod train;

#[derive(Parser)]
#[command(
    name = "kit",
    version,
    about = "Post-train small LLMs in Rust: QLoRA, SFT, DPO, GRPO, reward models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Generate text from one or more prompts (batched, streamed when there is one prompt).
    Generate(generate::GenerateArgs),
    /// List the built-in model aliases and where they resolve.
    Models,
    /// Check and generate datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Supervised fine-tuning with LoRA (TRL's SFTTrainer flags).
    Sft(train::SftArgs),
    /// Direct Preference Optimization with LoRA; the reference is the base with the adapter off.
    Dpo(train::DpoArgs),
    /// GRPO with built-in reward functions (and/or a trained reward model).
    Grpo(train::GrpoArgs),
    /// Train a reward model (Bradley–Terry) on preference pairs.
    Reward(train::RewardArgs),
    /// The main job: SFT then DPO on the shipped Japanese data, answers before/after, metrics and plots.
    Quickstart(quickstart::QuickstartArgs),
    /// The Rust Jupyter kernel with kit preloaded.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Open JupyterLab on the course notebooks (installs the kernel and Jupyter when missing).
    Notebook {
        /// The folder JupyterLab opens.
        #[arg(long, default_value = "notebooks")]
        dir: PathBuf,
    },
    /// Download models (aliases, hub ids) and the Japanese chart font (`font`) into the local cache ahead of time.
    Fetch {
        /// Models to fetch, or `font` for the Japanese font of PNG charts (IPAexGothic, from PyPI); default: every
        /// built-in alias and the font.
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum KernelCommand {
    /// Install evcxr_jupyter if missing and register the "Rust (kit)" kernel.
    Install,
    /// Start the kernel (what Jupyter runs from the kernelspec): evcxr_jupyter in a build folder of its own.
    #[command(hide = true)]
    Start {
        /// The evcxr_jupyter binary.
        #[arg(long)]
        evcxr: PathBuf,
        /// Jupyter's connection file (passed on to evcxr).
        #[arg(long = "control_file")]
        control_file: PathBuf,
    },
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Kernel(KernelCommand::Install) => {
            let p = kernel::install()?;
            println!("kernel \"Rust (kit)\" registered: {}", p.kernel_json.display());
            println!("evcxr_jupyter: {}", p.evcxr_jupyter.display());
            println!("start-up commands: {}", p.config_dir.join("init.evcxr").display());
            println!("kit crate: {}", p.kit_crate.display());
            println!(
                "a notebook's first cell (`:dep kit = ...`) builds kit the first time (a few minutes); later notebooks reuse the build folder in {} (seconds)",
                kit::hub::kit_home().join("evcxr-build").display()
            );
            Ok(())
        }
        Command::Kernel(KernelCommand::Start { evcxr, control_file }) => {
            let args = [
                "--control_file".to_string(),
                control_file.to_string_lossy().into_owned(),
            ];
            Ok(kernel::start(&evcxr, &args)?)
        }
        Command::Notebook { dir } => Ok(kernel::notebook(&dir)?),
        Command::Sft(a) => train::sft(a).map(drop).map_err(Into::into),
        Command::Dpo(a) => train::dpo(a).map(drop).map_err(Into::into),
        Command::Grpo(a) => train::grpo(a).map(drop).map_err(Into::into),
        Command::Reward(a) => train::reward(a).map(drop).map_err(Into::into),
        Command::Quickstart(a) => quickstart::run(a).map(drop).map_err(Into::into),
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
        Command::Data(cmd) => Ok(data::run(cmd, &mut std::io::stdout())?),
        Command::Fetch { names } => {
            let names = if names.is_empty() {
                let mut all: Vec<String> = kit::hub::ALIASES.iter().map(|a| a.name.to_string()).collect();
                all.push("font".into());
                all
            } else {
                names
            };
            for n in names {
                if n == "font" {
                    println!("font: {}", kit::hub::fetch_cjk_font()?.display());
                    continue;
                }
                let files = kit::hub::resolve(&n)?;
                println!("{n}: {files:?}");
            }
            Ok(())
        }
    }
}
