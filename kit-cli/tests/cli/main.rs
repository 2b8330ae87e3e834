//! The command line's integration tests in one binary: the trainer and data commands, and every notebook run
//! headlessly (`cargo test -p kit-cli --test cli notebooks::` runs only the notebooks).
#[path = "../../../kit/tests/common/mod.rs"]
mod common;

mod data_cli;
mod notebooks;
mod quickstart;
mod smoke_mode;
mod trainer_cli;
