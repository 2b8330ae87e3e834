//! Every notebook in `notebooks/` runs top to bottom under the Rust (evcxr) kernel with no error, no panic and nothing
//! on stderr (evcxr reports a panic or a `?` error as success, so `.ci/run_notebooks.py` checks the outputs).
//!
//! Needs evcxr_jupyter (installed with cargo on first use, ~6 min) and Python 3 with nbclient (installed into
//! `$KIT_HOME/nb-venv` on first use). The first notebook builds kit inside evcxr (a few minutes, once per build
//! folder); the build folder is `$KIT_HOME/evcxr-build`, shared by the notebooks, which run one after another.
//! They run in the smoke mode (`KIT_SMOKE=1`, see `kit::notebook::smoke_mode`): a few training steps each, so this
//! checks that every cell runs, not the outcomes; those are in the committed outputs of full runs.
use crate::common;

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Python with nbclient: `$KIT_HOME/nb-venv`, created on first use.
fn python_with_nbclient() -> PathBuf {
    let venv = kit::hub::kit_home().join("nb-venv");
    let py = venv.join("bin").join("python");
    let has = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import nbclient, nbformat, ipykernel"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&py) {
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin").join("pip"))
                .args(["install", "-q", "nbclient==0.11.0", "nbformat", "ipykernel"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok && has(&py), "could not set up {} with nbclient", venv.display());
    }
    py
}

#[test]
fn every_notebook_runs_without_errors() {
    let evcxr = kit_cli::kernel::ensure_evcxr().expect("evcxr_jupyter");
    // Registers the kernelspec "rust" that the notebooks name.
    let out = Command::new(&evcxr)
        .arg("--install")
        .output()
        .expect("evcxr_jupyter --install");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let py = python_with_nbclient();

    let notebooks = ipynb_files(&repo().join("notebooks"));
    assert!(notebooks.len() >= 2, "no notebooks found");

    let build = kit::hub::kit_home().join("evcxr-build");
    let config = common::temp_dir("evcxr-config"); // empty: no personal init.evcxr
    std::fs::create_dir_all(&build).unwrap();
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("notebooks-out");
    let run = |notebooks: &[PathBuf], extra: &[&str]| {
        let bin = py.parent().unwrap().to_path_buf();
        let path = std::env::join_paths(
            [bin]
                .into_iter()
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .unwrap();
        Command::new(&py)
            .envs(kit_cli::kernel::KERNEL_BUILD_ENV)
            .arg(repo().join(".ci/run_notebooks.py"))
            .arg(&out_dir)
            .args(notebooks)
            .args(["--timeout", "1800"])
            .args(extra)
            // The CI smoke mode: notebooks shorten their training loops (committed outputs come from full runs).
            .env(kit::notebook::SMOKE_ENV, "1")
            .env("EVCXR_TMPDIR", &build)
            .env("EVCXR_CONFIG_DIR", &config)
            .env("PATH", path)
            .env(
                "LD_LIBRARY_PATH",
                kit_cli::kernel::kernel_library_path().expect("rustc --print target-libdir"),
            )
            .status()
            .expect("run_notebooks.py")
            .success()
    };
    // The notebooks name the "Rust (kit)" kernel of `kit kernel install`; CI runs them under plain evcxr ("rust",
    // registered above) with one fixed build folder, which is faster than the kit kernel's `:cache` here. Both start
    // with the same `:dep kit` cell, so the code is the same.
    assert!(
        run(&notebooks, &["--kernel", "rust"]),
        "some notebooks failed; executed copies are in {}",
        out_dir.display()
    );
    // The Colab flavour of the first notebook under the Python kernel: the %%rust bridge end to end.
    let colab = ipynb_files(&repo().join("notebooks").join("colab"));
    assert!(
        run(&colab[..1], &["--kernel", "python3"]),
        "the Colab flavour failed under the Python kernel; executed copy in {}",
        out_dir.display()
    );
}

fn ipynb_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    v.sort();
    v
}

#[test]
fn colab_flavours_are_in_sync_with_the_notebooks() {
    let out = Command::new("python3")
        .arg(repo().join("notebooks/make_colab.py"))
        .arg("--check")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
