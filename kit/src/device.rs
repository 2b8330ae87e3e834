//! Pick the device and the compute dtype: f32 on CPU, f16 on CUDA (a T4 has no bf16 kernels in candle; f16 runs on
//! every CUDA GPU kit targets).
use candle_core::{DType, Device};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// Returns the device to run on and the activation dtype to use there.
pub fn pick_device(choice: DeviceChoice) -> crate::Result<(Device, DType)> {
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
