//! Pick the device and the compute dtype: f32 on CPU, f16 on CUDA (a T4 has no bf16 kernels in candle; f16 runs on
//! every CUDA GPU kit targets).
use candle_core::{DType, Device};

/// Which device to ask for: the first CUDA GPU when there is one (`Auto`), or a given kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// The device to run on and the dtype activations are computed in there.
#[derive(Debug, Clone)]
pub struct PickedDevice {
    /// The first CUDA GPU, or the CPU.
    pub device: Device,
    /// f32 on CPU, f16 on CUDA.
    pub dtype: DType,
}

/// The device to run on and the activation dtype to use there.
pub fn pick_device(choice: DeviceChoice) -> crate::Result<PickedDevice> {
    fix_cpu_thread_count();
    reuse_freed_memory();
    let cpu = PickedDevice {
        device: Device::Cpu,
        dtype: DType::F32,
    };
    let cuda = |device| PickedDevice {
        device,
        dtype: DType::F16,
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu),
        DeviceChoice::Cuda => Ok(cuda(Device::new_cuda(0)?)),
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(dev) = Device::new_cuda(0) {
                    return Ok(cuda(dev));
                }
            }
            Ok(cpu)
        }
    }
}

/// Keep freed memory in the process for the next training step (glibc only; elsewhere nothing happens).
///
/// A step allocates and frees the same activation-sized buffers (2–40 MB each) hundreds of times. glibc hands
/// blocks that large to the kernel and maps fresh zeroed pages for the next one (`mmap` above its threshold, and it
/// trims the heap's top above 128 KiB free), so the kernel zeroes fresh pages all through a step (`clear_page` was
/// an eighth of a step's profile). With the mmap threshold at its ceiling (32 MiB), no trimming below 2 GiB free and
/// 256 MiB of headroom per heap growth, the blocks are reused (figures in the README's speed section). A value the
/// user set through the `MALLOC_*_` environment variables is left alone.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let user_set = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"]
                .iter()
                .any(|v| std::env::var_os(v).is_some());
            if !user_set {
                // SAFETY: mallopt only changes allocator parameters; glibc takes its arena lock for it.
                unsafe {
                    libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                    libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
                    libc::mallopt(libc::M_TOP_PAD, 256 << 20);
                }
            }
        });
    }
}

/// Pin the thread count candle's CPU matmuls use, so that it is not recounted at every product.
///
/// candle 0.11.1 sizes each CPU matmul's parallelism with `utils::get_num_threads()`, which, unless
/// `RAYON_NUM_THREADS` is set, counts the physical cores anew at every call; on a CPU whose cores are all alike
/// (every x86 one) that is a read and parse of `/proc/cpuinfo` (`num_cpus::get_physical`). Decoding multiplies
/// 60+ times per token outside the quantized kernels (attention, LoRA), so this took 1/5 of SmolLM2's batch-1
/// decode (97 → 119 tokens/s with the variable set, same machine, same run). The value set is the one candle computes;
/// a value the user set is left alone. It also sizes rayon's global pool when that pool is not built yet.
pub fn fix_cpu_thread_count() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            let threads = candle_core::utils::get_num_threads();
            // SAFETY: Rust's own environment reads and writes are serialized by std's lock; what could race is C code
            // reading the environment on another thread at this instant, and kit links none that does so after
            // start-up. This runs once, when the first model is loaded.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
        }
    });
}
