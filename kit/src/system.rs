//! The machine's real budget, next to the memory plan of [`crate::memory`]: RAM (the cgroup's limit when it is
//! smaller), GPUs and their memory (`nvidia-smi`, when there is one), CPU threads, versions, and the peak memory this
//! process has used so far ([`peak_memory_gib`]) and uses now ([`current_memory_gib`]).
use std::process::Command;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One GPU as `nvidia-smi` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    pub name: String,
    pub total_gib: f64,
    pub used_gib: f64,
}

/// What the machine offers and runs.
#[derive(Debug, Clone)]
pub struct Machine {
    pub os: String,
    pub arch: String,
    /// Threads this process may use.
    pub cpu_threads: usize,
    /// Total RAM, or the cgroup's memory limit when it is smaller (a container).
    pub ram_total_gib: f64,
    /// RAM available to new allocations now.
    pub ram_available_gib: f64,
    /// Empty without an NVIDIA GPU (or without `nvidia-smi`).
    pub gpus: Vec<Gpu>,
    pub kit_version: &'static str,
    /// `rustc --version` of the compiler on PATH (what evcxr builds notebooks with).
    pub rustc: Option<String>,
    /// Whether this kit was built with the `cuda` feature.
    pub cuda_built: bool,
}

impl Machine {
    /// Read the machine now.
    pub fn detect() -> Machine {
        let mut sys = sysinfo::System::new();
        sys.refresh_memory();
        let (mut total, mut available) = (sys.total_memory(), sys.available_memory());
        if let Some(l) = sys
            .cgroup_limits()
            .filter(|l| l.total_memory > 0 && l.total_memory < total)
        {
            total = l.total_memory;
            available = available.min(l.free_memory);
        }
        Machine {
            os: sysinfo::System::long_os_version().unwrap_or_else(|| std::env::consts::OS.to_string()),
            arch: std::env::consts::ARCH.to_string(),
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ram_total_gib: total as f64 / GIB,
            ram_available_gib: available as f64 / GIB,
            gpus: nvidia_gpus(),
            kit_version: crate::VERSION,
            rustc: command_line("rustc", &["--version"]),
            cuda_built: cfg!(feature = "cuda"),
        }
    }
}

/// The GPUs `nvidia-smi` lists (none when it is absent or fails).
pub fn nvidia_gpus() -> Vec<Gpu> {
    command_line(
        "nvidia-smi",
        &[
            "--query-gpu=name,memory.total,memory.used",
            "--format=csv,noheader,nounits",
        ],
    )
    .map(|out| parse_nvidia_smi(&out))
    .unwrap_or_default()
}

/// Rows of `nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader,nounits` (MiB).
pub fn parse_nvidia_smi(csv: &str) -> Vec<Gpu> {
    csv.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let mib = |s: &str| s.parse::<f64>().ok().map(|m| m / 1024.0);
            match f.as_slice() {
                [name, total, used] => Some(Gpu {
                    name: name.to_string(),
                    total_gib: mib(total)?,
                    used_gib: mib(used)?,
                }),
                _ => None,
            }
        })
        .collect()
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The resident memory (RSS) of this process now, in GiB.
pub fn current_memory_gib() -> Option<f64> {
    let pid = sysinfo::get_current_pid().ok()?;
    let mut sys = sysinfo::System::new();
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[pid]),
        true,
        sysinfo::ProcessRefreshKind::nothing().with_memory(),
    );
    Some(sys.process(pid)?.memory() as f64 / GIB)
}

/// The most resident memory (RSS) this process has used since it started, in GiB (`getrusage`; `None` where that
/// is not available). On a GPU this is host memory only; [`nvidia_gpus`] reports the device's.
pub fn peak_memory_gib() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes into the struct we pass and reads nothing else.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
            return None;
        }
        // Linux reports kibibytes, macOS bytes.
        let bytes = if cfg!(target_os = "macos") {
            u.ru_maxrss as f64
        } else {
            u.ru_maxrss as f64 * 1024.0
        };
        Some(bytes / GIB)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The CPU's model name and the SIMD features kit's kernels (and candle's, and gemm's) choose between at run time,
/// e.g. `AMD EPYC, 2 threads; avx2 fma f16c avx512f avx512vnni avx512bf16`. Benchmarks print it beside their tables:
/// speed is only comparable on the same CPU.
pub fn cpu_summary() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    #[allow(unused_mut)]
    let mut features: Vec<&str> = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        let known = [
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("fma", std::is_x86_feature_detected!("fma")),
            ("f16c", std::is_x86_feature_detected!("f16c")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
            ("avx512vnni", std::is_x86_feature_detected!("avx512vnni")),
            ("avx512bf16", std::is_x86_feature_detected!("avx512bf16")),
            ("avxvnni", std::is_x86_feature_detected!("avxvnni")),
        ];
        features.extend(known.iter().filter(|(_, on)| *on).map(|(name, _)| *name));
    }
    format!("{model}, {threads} threads; {}", features.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nvidia_smi_and_this_machine() {
        let gpus = parse_nvidia_smi("Tesla T4, 15360, 0\nNVIDIA H200, 143771, 512\nbad line\n");
        assert_eq!(gpus.len(), 2);
        assert_eq!(
            (gpus[0].name.as_str(), gpus[0].total_gib, gpus[0].used_gib),
            ("Tesla T4", 15.0, 0.0)
        );
        assert!((gpus[1].used_gib - 0.5).abs() < 1e-12);

        let m = Machine::detect();
        assert!(m.ram_total_gib > 0.1 && m.ram_available_gib <= m.ram_total_gib + 1e-9 && m.cpu_threads >= 1);
        let before = peak_memory_gib().unwrap();
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let after = peak_memory_gib().unwrap();
        let now = current_memory_gib().unwrap();
        assert!(now >= 0.0625 && now <= after + 0.01, "RSS {now} GiB, peak {after} GiB");
        // The peak only grows, and now covers the 64 MiB just touched.
        assert!(before > 0.0 && after >= before && after >= 0.0625, "{before} → {after}");
        assert!(m.table().to_string().contains("RAM"));
    }
}
