//! The `kit` binary: parse the command line, run it (see the `kit_cli` library).
use clap::Parser;

fn main() -> anyhow::Result<()> {
    kit_cli::run(kit_cli::Cli::parse())
}
