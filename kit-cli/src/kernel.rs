//! `kit kernel install` and `kit notebook`: the Rust Jupyter kernel (evcxr) with kit preloaded, and JupyterLab on
//! the course notebooks.
//!
//! What `kit kernel install` does, and where:
//! 1. finds `evcxr_jupyter` on PATH or in `~/.cargo/bin`, else runs `cargo install evcxr_jupyter --locked --version
//!    0.22.0` (about 6 minutes, once);
//! 2. makes `$KIT_HOME/evcxr/` the kernel's evcxr config folder (an empty `init.evcxr`, so a personal evcxr set-up
//!    does not change what the notebooks do);
//! 3. registers the kernelspec "Rust (kit)" in Jupyter's user data dir (`kernels/kit/kernel.json`). It starts
//!    `kit kernel start`, which takes a build folder `$KIT_HOME/evcxr-build/N` (the first one no other kernel holds,
//!    locked for the kernel's life) and becomes `evcxr_jupyter` with `EVCXR_TMPDIR` set to it.
//!
//! Why a build folder of our own: evcxr otherwise builds every kernel in a new temporary folder, so each notebook
//! opened rebuilds kit and candle (minutes), and its `:cache` never caches a path dependency such as kit. With a
//! fixed folder the second notebook's `:dep kit` cell takes seconds. Two kernels must not share one (each writes
//! its cells into the folder), hence one folder per running kernel. A new folder starts with this checkout's
//! `Cargo.lock`, so notebooks build the crate versions the tests ran with.
//!
//! The notebooks name this kernel ("kit") in their metadata and CI runs them on it; their first cell,
//! `:dep kit = { path = "../kit" }`, works under evcxr's plain "rust" kernel too (as the Colab flavours run them).
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

/// The start-up commands of the kit kernel: none. A `:dep` here would build before the kernel answers Jupyter (which
/// gives up on a kernel after 60 s), and no `:cache` is needed: [`start`] gives each kernel a build folder that
/// outlives it.
pub fn init_evcxr() -> String {
    "// Start-up commands of the \"Rust (kit)\" kernel (kit kernel install). Notebooks add kit with their first cell.\n"
        .to_string()
}

/// The kernelspec of "Rust (kit)": `kit_exe kernel start` with evcxr's path, the config folder and the build settings.
pub fn kernel_spec(kit_exe: &Path, evcxr: &Path, config_dir: &Path) -> serde_json::Value {
    let mut env = serde_json::json!({
        "EVCXR_CONFIG_DIR": config_dir.to_string_lossy(),
        "LD_LIBRARY_PATH": kernel_library_path().map(|p| p.to_string_lossy().to_string()).unwrap_or_default(),
    });
    for (k, v) in KERNEL_BUILD_ENV {
        env[k] = v.into();
    }
    serde_json::json!({
        "argv": [
            kit_exe.to_string_lossy(), "kernel", "start",
            "--evcxr", evcxr.to_string_lossy(),
            "--control_file", "{connection_file}",
        ],
        "display_name": "Rust (kit)",
        "language": "rust",
        "interrupt_mode": "message",
        "env": env,
    })
}

/// Install (or refresh) the "Rust (kit)" kernel.
pub fn install() -> Result<KernelPaths> {
    let evcxr = ensure_evcxr()?;
    let kit_exe = std::env::current_exe().map_err(|e| Error::msg(format!("cannot find the kit binary: {e}")))?;
    let kit_crate = kit_crate_dir();
    let config_dir = kit::hub::kit_home().join("evcxr");
    std::fs::create_dir_all(&config_dir).map_err(|e| Error::file(&config_dir, e))?;
    kit::io::write_atomic(config_dir.join("init.evcxr"), init_evcxr().as_bytes())?;
    let kernel_dir = jupyter_data_dir().join("kernels").join("kit");
    std::fs::create_dir_all(&kernel_dir).map_err(|e| Error::file(&kernel_dir, e))?;
    let spec = kernel_spec(&kit_exe, &evcxr, &config_dir);
    let kernel_json = kernel_dir.join("kernel.json");
    kit::io::write_atomic(&kernel_json, serde_json::to_string_pretty(&spec)?.as_bytes())?;
    Ok(KernelPaths {
        evcxr_jupyter: evcxr,
        kernel_json,
        config_dir,
        kit_crate,
    })
}

/// How many kernels may run at once, each with a build folder of its own.
pub const BUILD_SLOTS: usize = 8;

/// The build folder of a kernel: `root/N` for the first N whose lock `root/N.lock` no running kernel holds. The
/// returned file holds the lock (released when every process that inherited it has exited).
pub fn claim_build_folder(root: &Path) -> Result<(PathBuf, std::fs::File)> {
    std::fs::create_dir_all(root).map_err(|e| Error::file(root, e))?;
    for n in 0..BUILD_SLOTS {
        let lock_path = root.join(format!("{n}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::file(&lock_path, e))?;
        if try_lock(&lock) {
            let dir = root.join(n.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| Error::file(&dir, e))?;
            return Ok((dir, lock));
        }
    }
    Err(Error::msg(format!(
        "{BUILD_SLOTS} Rust (kit) kernels are already running (every build folder in {} is taken): close one",
        root.display()
    )))
}

#[cfg(unix)]
fn try_lock(f: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows; no memory is passed.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_: &std::fs::File) -> bool {
    true
}

/// Seed a new build folder with this checkout's `Cargo.lock` (evcxr writes its own crate there, so without a lock
/// cargo would resolve the newest versions instead of the ones the tests ran with). An existing lock is kept.
fn seed_lock_file(dir: &Path) -> Result<()> {
    let ours = kit_crate_dir().join("..").join("Cargo.lock");
    let theirs = dir.join("Cargo.lock");
    if ours.is_file() && !theirs.exists() {
        std::fs::copy(&ours, &theirs).map_err(|e| Error::file(&theirs, e))?;
    }
    Ok(())
}

/// `kit kernel start`: claim a build folder, then run `evcxr_jupyter` in it with `args` (the kernelspec's
/// `--control_file FILE`). On Unix this process becomes evcxr (exec), keeping the folder's lock open.
pub fn start(evcxr: &Path, args: &[String]) -> Result<()> {
    let root = kit::hub::kit_home().join("evcxr-build");
    let (dir, lock) = claim_build_folder(&root)?;
    seed_lock_file(&dir)?;
    let mut cmd = Command::new(evcxr);
    cmd.args(args).env("EVCXR_TMPDIR", &dir);
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        // Keep the lock across exec: clear close-on-exec so evcxr inherits the locked descriptor.
        // SAFETY: fcntl on a descriptor owned by `lock`, which stays open until exec.
        unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_SETFD, 0) };
        let e = cmd.exec();
        Err(Error::msg(format!("cannot start {}: {e}", evcxr.display())))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .map_err(|e| Error::msg(format!("cannot start {}: {e}", evcxr.display())))?;
        drop(lock);
        if status.success() {
            Ok(())
        } else {
            Err(Error::msg(format!("evcxr_jupyter exited with {status}")))
        }
    }
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
    fn kernel_spec_starts_kit_with_a_build_folder_and_the_release_settings() {
        let spec = kernel_spec(
            Path::new("/opt/kit"),
            Path::new("/opt/evcxr_jupyter"),
            Path::new("/home/k/evcxr"),
        );
        let argv: Vec<&str> = spec["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            argv,
            [
                "/opt/kit",
                "kernel",
                "start",
                "--evcxr",
                "/opt/evcxr_jupyter",
                "--control_file",
                "{connection_file}"
            ]
        );
        assert_eq!(spec["env"]["EVCXR_CONFIG_DIR"], "/home/k/evcxr");
        assert_eq!(spec["env"]["CARGO_PROFILE_DEV_OPT_LEVEL"], "3");
        // evcxr loads each cell as a library linked against Rust's std: the loader path must name its folder.
        let libdir = std::path::PathBuf::from(
            spec["env"]["LD_LIBRARY_PATH"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap(),
        );
        let has_std = std::fs::read_dir(&libdir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"));
        assert!(has_std, "no libstd-* in {}", libdir.display());
        // The start-up commands build nothing (Jupyter gives up on a kernel that takes minutes to answer).
        assert!(!init_evcxr().lines().any(|l| l.trim_start().starts_with(':')));
    }

    #[test]
    fn ci_and_the_colab_setup_install_the_evcxr_version_kit_looks_for() {
        let root = kit_crate_dir().join("..");
        for file in [".ci/run", "notebooks/make_colab.py"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            assert!(
                text.contains(&format!("evcxr_jupyter --locked --version {EVCXR_VERSION}")),
                "{file} installs another evcxr_jupyter than {EVCXR_VERSION}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn running_kernels_get_different_build_folders_and_a_freed_one_is_reused() {
        let root = std::env::temp_dir().join(format!("kit-kernel-slots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (a, lock_a) = claim_build_folder(&root).unwrap();
        let (b, lock_b) = claim_build_folder(&root).unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        drop(lock_a);
        let (c, _lock_c) = claim_build_folder(&root).unwrap();
        assert_eq!(
            c, a,
            "the folder of a kernel that exited is taken again (it holds the warm build)"
        );
        drop(lock_b);
        let _ = std::fs::remove_dir_all(&root);
    }
}
