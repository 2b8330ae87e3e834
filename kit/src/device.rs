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
