//! Issue 12's one table. With `KIT_BENCH_SUMMARY=FILE` set, the generate, lora_step and train_step benches append
//! their target rows to FILE; `kit/benches/summary.sh` runs them and prints the rows under one header.

/// One row of the table: the figure, kit's value, the reference measured in the same sitting, kit / reference, and
/// the "must reach" and "goal".
pub fn row(figure: &str, kit: &str, reference: &str, ratio: &str, must: &str, goal: &str) {
    use std::io::Write;
    let Ok(path) = std::env::var("KIT_BENCH_SUMMARY") else {
        return;
    };
    let line = format!("| {figure} | {kit} | {reference} | {ratio} | {must} | {goal} |\n");
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
    if let Err(e) = file.and_then(|mut f| f.write_all(line.as_bytes())) {
        eprintln!("{path}: {e}");
    }
}
