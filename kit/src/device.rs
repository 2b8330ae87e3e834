//! Pick the device and the compute dtype: f32 on CPU, f16 on pre-Ampere CUDA (T4 has no bf16 kernels), bf16 on sm80+.
use candle_core::{DType, Device};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// candle parallelises element-wise CPU ops on a pool of spinning worker threads, separate from the rayon pool its
/// matmuls use. On few cores the two fight: measured on 2 cores, one LoRA training step on SmolLM2 (256 tokens) took
/// 15.9 s with the pool and 4.3 s with element-wise ops on the calling thread. Unless the user set
/// `CANDLE_NUM_THREADS`, kit keeps element-wise ops single-threaded on machines with up to 4 cores. Must run before
/// candle's first CPU op (the pool is created once).
pub fn tune_cpu_threads() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() && cores <= 4 {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
    });
}

/// Returns the device to run on and the activation dtype to use there.
pub fn pick_device(choice: DeviceChoice) -> crate::Result<(Device, DType)> {
    tune_cpu_threads();
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, DType::F32)),
        DeviceChoice::Cuda => {
            let dev = Device::new_cuda(0)?;
            Ok((dev, DType::F16))
        }
        DeviceChoice::Auto => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(dev) = Device::new_cuda(0) {
                    return Ok((dev, DType::F16));
                }
            }
            Ok((Device::Cpu, DType::F32))
        }
    }
}
