//! Every notebook in `notebooks/` runs top to bottom under the "Rust (kit)" kernel that `kit kernel install`
//! registers, with no error, no panic and nothing on stderr (evcxr reports a panic or a `?` error as success, so
//! `.ci/run_notebooks.py` checks the outputs).
//!
//! Needs evcxr_jupyter (installed with cargo on first use, ~6 min) and Python 3 with nbclient (installed into
//! `$KIT_HOME/nb-venv` on first use). The kernel builds in `$KIT_HOME/evcxr-build/N` (see `kit_cli::kernel`): the
//! first notebook builds kit there (a few minutes, once per machine), the others reuse it. They run one after
//! another in the smoke mode (`KIT_SMOKE=1`, see `kit::notebook::smoke`): one training step, a few rows and tokens,
//! so this checks that every cell runs, not the outcomes; those are in the committed outputs of full runs.
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
    // The kernel a user installs, registered in a Jupyter data folder of this test's own.
    let jupyter_data = common::temp_dir("jupyter-data");
    let out = Command::new(env!("CARGO_BIN_EXE_kit"))
        .args(["kernel", "install"])
        .env("JUPYTER_DATA_DIR", &jupyter_data)
        .output()
        .expect("kit kernel install");
    assert!(
        out.status.success(),
        "kit kernel install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let py = python_with_nbclient();

    let notebooks = ipynb_files(&repo().join("notebooks"));
    assert!(notebooks.len() >= 2, "no notebooks found");

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("notebooks-out");
    let run =
        |notebooks: &[PathBuf], out_dir: &std::path::Path, extra: &[&str], envs: &[(&str, std::ffi::OsString)]| {
            let bin = py.parent().unwrap().to_path_buf();
            let path = std::env::join_paths(
                [bin]
                    .into_iter()
                    .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
            )
            .unwrap();
            Command::new(&py)
                .arg(repo().join(".ci/run_notebooks.py"))
                .arg(out_dir)
                .args(notebooks)
                .args(["--timeout", "1800"])
                .args(extra)
                // The CI smoke mode: notebooks shorten their loops (committed outputs come from full runs).
                .env(kit::notebook::SMOKE_ENV, "1")
                .env("PATH", path)
                .envs(envs.iter().map(|(k, v)| (k, v)))
                .status()
                .expect("run_notebooks.py")
                .success()
        };
    // Each notebook on the kernel its metadata names ("kit"), as a student's Jupyter starts it.
    assert!(
        run(
            &notebooks,
            &out_dir,
            &[],
            &[("JUPYTER_DATA_DIR", jupyter_data.clone().into_os_string())]
        ),
        "some notebooks failed; executed copies are in {}",
        out_dir.display()
    );

    // The Colab flavour of the first notebook under the Python kernel: the %%rust bridge end to end. Its setup cell
    // registers evcxr's plain "rust" kernel; it builds in a kit kernel's build folder (claimed, so no running kit
    // kernel shares it), with the kit kernel's settings, as a warm Colab runtime would.
    let (build, _lock) = kit_cli::kernel::claim_build_folder(&kit::hub::kit_home().join("evcxr-build")).unwrap();
    let config = common::temp_dir("evcxr-config"); // empty: no personal init.evcxr
    let mut envs: Vec<(&str, std::ffi::OsString)> = vec![
        ("EVCXR_TMPDIR", build.into_os_string()),
        ("EVCXR_CONFIG_DIR", config.into_os_string()),
    ];
    envs.extend(kit_cli::kernel::KERNEL_BUILD_ENV.iter().map(|(k, v)| (*k, v.into())));
    let colab = ipynb_files(&repo().join("notebooks").join("colab"));
    let colab_out = out_dir.join("colab");
    assert!(
        run(&colab[..1], &colab_out, &["--kernel", "python3"], &envs),
        "the Colab flavour failed under the Python kernel; executed copy in {}",
        colab_out.display()
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
