//! The `kit` command line: thin; parses flags into the same configs the library uses.
fn main() -> anyhow::Result<()> {
    Ok(())
}
