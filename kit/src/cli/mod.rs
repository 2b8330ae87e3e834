//! What the `kit` subcommands do, as library functions: the binary only parses flags, so tests and notebooks can run
//! the same code (and see the same output) without a subprocess.
pub mod data;
pub mod kernel;
pub mod quickstart;
pub mod train;
