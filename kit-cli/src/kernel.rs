//! `kit kernel install` and `kit notebook`: the Rust Jupyter kernel (evcxr) with kit preloaded, and JupyterLab on
//! the course notebooks.
//!
//! What `kit kernel install` does, and where:
//! 1. finds `evcxr_jupyter` on PATH or in `~/.cargo/bin`, else runs `cargo install evcxr_jupyter --locked --version
//!    0.22.0` (about 6 minutes, once);
//! 2. writes `$KIT_HOME/evcxr/init.evcxr`: a shared build cache (`:cache`), so that after the first build every
//!    notebook's `:dep kit` cell takes seconds, and two open notebooks do not collide. The start-up itself builds
//!    nothing: evcxr runs init.evcxr before answering Jupyter, and a build of minutes there makes Jupyter give up on
//!    the kernel (nbclient waits 60 s), so kit is added by each notebook's first cell instead;
//! 3. registers the kernelspec "Rust (kit)" in Jupyter's user data dir (`kernels/kit/kernel.json`), which starts
//!    evcxr with `EVCXR_CONFIG_DIR` pointing at that folder.
//!
//! The notebooks name this kernel ("kit") in their metadata; their first cell, `:dep kit = { path = "../kit" }`, works
//! under evcxr's plain "rust" kernel too (as CI and Colab run them).
use std::path::{Path, PathBuf};
use std::process::Command;

use kit::{Error, Result};

pub const EVCXR_VERSION: &str = "0.22.0";

/// Where an installed kernel's pieces are.
#[derive(Debug, Clone)]
pub struct KernelPaths {
    pub evcxr_jupyter: PathBuf,
    pub kernel_json: PathBuf,
    pub config_dir: PathBuf,
    pub kit_crate: PathBuf,
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `evcxr_jupyter` on PATH or in cargo's bin folder.
pub fn find_evcxr() -> Option<PathBuf> {
    let exe = "evcxr_jupyter";
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([std::env::var_os("CARGO_HOME")
            .map_or_else(|| home().join(".cargo"), PathBuf::from)
            .join("bin")])
        .map(|d| d.join(exe))
        .find(|p| p.is_file())
}

/// Find evcxr_jupyter, installing it with cargo when missing.
pub fn ensure_evcxr() -> Result<PathBuf> {
    if let Some(p) = find_evcxr() {
        return Ok(p);
    }
    eprintln!("installing evcxr_jupyter {EVCXR_VERSION} with cargo (about 6 minutes, once) ...");
    let status = Command::new("cargo")
        .args(["install", "evcxr_jupyter", "--locked", "--version", EVCXR_VERSION])
        .status()
        .map_err(|e| Error::msg(format!("cannot run cargo to install evcxr_jupyter: {e}")))?;
    if !status.success() {
        return Err(Error::msg(
            "`cargo install evcxr_jupyter` failed (see its output above)",
        ));
    }
    find_evcxr().ok_or_else(|| Error::msg("evcxr_jupyter was installed but is not in ~/.cargo/bin or on PATH"))
}

/// Jupyter's per-user data folder (`$JUPYTER_DATA_DIR`, else the platform default).
pub fn jupyter_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("JUPYTER_DATA_DIR") {
        return PathBuf::from(d);
    }
    if cfg!(target_os = "macos") {
        return home().join("Library/Jupyter");
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".local/share"))
        .join("jupyter")
}

/// The folder holding the Rust standard library as a shared object (`rustc --print target-libdir`). evcxr loads
/// each cell as a dynamic library linked against it, and the loader must be able to find it.
pub fn rust_target_libdir() -> Option<PathBuf> {
    let out = Command::new("rustc").args(["--print", "target-libdir"]).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `LD_LIBRARY_PATH` for an evcxr kernel: the standard library's folder first, then whatever was set (CUDA's
/// libraries, say).
pub fn kernel_library_path() -> Option<std::ffi::OsString> {
    let dir = rust_target_libdir()?;
    let old = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    // An empty entry would mean "the current folder": leave it out.
    let old = std::env::split_paths(&old).filter(|p| !p.as_os_str().is_empty());
    std::env::join_paths(std::iter::once(dir).chain(old)).ok()
}

/// The library crate `kit/` of this checkout (the binary was built from its sibling `kit-cli/`): what the
/// notebooks' `:dep kit = { path = "../kit" }` names.
pub fn kit_crate_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("kit"), |root| root.join("kit"))
}

/// Cargo profile settings for the code evcxr builds (kit and candle included). evcxr compiles every cell in cargo's
/// dev profile with opt-level 2, debug assertions and overflow checks on, and the training loops then run about half
/// as fast as in a release build. Cargo settings given in the environment win over a manifest's `[profile]`, so the
/// kernel is started with these: the release build's code generation.
pub const KERNEL_BUILD_ENV: [(&str, &str); 3] = [
    ("CARGO_PROFILE_DEV_OPT_LEVEL", "3"),
    ("CARGO_PROFILE_DEV_DEBUG_ASSERTIONS", "false"),
    ("CARGO_PROFILE_DEV_OVERFLOW_CHECKS", "false"),
];

/// The start-up commands of the kit kernel: a 4 GiB build cache shared by every notebook. Nothing is built here
/// (see the module docs); the notebooks' first cell adds kit.
pub fn init_evcxr() -> String {
    ":cache 4096\n".to_string()
}

/// Install (or refresh) the "Rust (kit)" kernel.
pub fn install() -> Result<KernelPaths> {
    let evcxr = ensure_evcxr()?;
    let kit_crate = kit_crate_dir();
    let config_dir = kit::hub::kit_home().join("evcxr");
    std::fs::create_dir_all(&config_dir).map_err(|e| Error::file(&config_dir, e))?;
    kit::io::write_atomic(config_dir.join("init.evcxr"), init_evcxr().as_bytes())?;
    let kernel_dir = jupyter_data_dir().join("kernels").join("kit");
    std::fs::create_dir_all(&kernel_dir).map_err(|e| Error::file(&kernel_dir, e))?;
    let mut env = serde_json::json!({
        "EVCXR_CONFIG_DIR": config_dir.to_string_lossy(),
        "LD_LIBRARY_PATH": kernel_library_path().map(|p| p.to_string_lossy().to_string()).unwrap_or_default(),
    });
    for (k, v) in KERNEL_BUILD_ENV {
        env[k] = v.into();
    }
    let spec = serde_json::json!({
        "argv": [evcxr.to_string_lossy(), "--control_file", "{connection_file}"],
        "display_name": "Rust (kit)",
        "language": "rust",
        "interrupt_mode": "message",
        "env": env,
    });
    let kernel_json = kernel_dir.join("kernel.json");
    kit::io::write_atomic(&kernel_json, serde_json::to_string_pretty(&spec)?.as_bytes())?;
    Ok(KernelPaths {
        evcxr_jupyter: evcxr,
        kernel_json,
        config_dir,
        kit_crate,
    })
}

/// `jupyter` on PATH, or in kit's own Python environment (created with pip on first use).
pub fn ensure_jupyter() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("jupyter-lab"))
        .find(|p| p.is_file())
    {
        return Ok(p);
    }
    let venv = kit::hub::kit_home().join("jupyter-venv");
    let lab = venv.join("bin").join("jupyter-lab");
    if lab.is_file() {
        return Ok(lab);
    }
    eprintln!("installing JupyterLab into {} ...", venv.display());
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q", "jupyterlab"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok || !lab.is_file() {
        return Err(Error::msg("could not install JupyterLab with python3 -m venv + pip"));
    }
    Ok(lab)
}

/// Open JupyterLab on `dir` (installing the kernel and Jupyter first when needed).
pub fn notebook(dir: &Path) -> Result<()> {
    let paths = install()?;
    eprintln!("kernel \"Rust (kit)\": {}", paths.kernel_json.display());
    let lab = ensure_jupyter()?;
    let status = Command::new(lab)
        .arg(format!("--notebook-dir={}", dir.display()))
        .status()
        .map_err(|e| Error::msg(format!("cannot start JupyterLab: {e}")))?;
    if !status.success() {
        return Err(Error::msg("JupyterLab exited with an error"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kit_crate_is_the_library_next_to_this_one() {
        let dir = kit_crate_dir();
        assert!(
            dir.ends_with("kit") && dir.join("src/lib.rs").is_file(),
            "{}",
            dir.display()
        );
    }

    #[test]
    fn init_file_sets_a_shared_cache_and_builds_nothing() {
        // A `:dep` at start-up would build before the kernel answers Jupyter, which then gives up on it.
        let s = init_evcxr();
        assert_eq!(s, ":cache 4096\n");
        assert!(!s.contains(":dep"));
    }
}
