//! Fast forward, explicit backward: attach a result computed outside the autograd graph to its input, with a
//! hand-written gradient.
//!
//! candle's fused kernels (softmax, RMSNorm, RoPE, quantized matmul) have no backward, and the composite forms that
//! do are slow on CPU and keep many intermediates alive. Here the forward runs the fused kernel on a detached input,
//! and a custom op re-attaches its result to the input; the op's backward is the closed-form gradient.
use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

use crate::Result;

type Backward = Box<dyn Fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

struct Precomputed {
    name: &'static str,
    /// Taken (not kept) by the forward, so the result is stored once, as the op's output.
    output: Mutex<Option<Tensor>>,
    backward: Backward,
}

impl Precomputed {
    fn take(&self) -> candle_core::Result<Tensor> {
        let mut slot = self
            .output
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned lock".into()))?;
        slot.take()
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: forward ran twice", self.name)))?
            .contiguous()
    }
}

impl CustomOp1 for Precomputed {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, _x: &CpuStorage, _layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = self.take()?;
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((s.try_clone(layout)?, y.shape().clone())),
            _ => candle_core::bail!("{}: result is not on the CPU", self.name),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _x: &candle_core::CudaStorage,
        _layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let y = self.take()?;
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((s.try_clone(layout)?, y.shape().clone())),
            _ => candle_core::bail!("{}: result is not on the GPU", self.name),
        }
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, grad_y: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some((self.backward)(x, y, grad_y)?))
    }
}

/// Return `y` (computed from `x.detach()`) as a function of `x` whose gradient is `backward(x, y, ∂L/∂y)`.
/// Without a graph upstream of `x`, `y` is returned as it is.
pub fn with_backward(
    x: &Tensor,
    y: Tensor,
    name: &'static str,
    backward: impl Fn(&Tensor, &Tensor, &Tensor) -> candle_core::Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !x.track_op() {
        return Ok(y);
    }
    let op = Precomputed {
        name,
        output: Mutex::new(Some(y)),
        backward: Box::new(backward),
    };
    Ok(x.apply_op1(op)?)
}

type Backward3 =
    Box<dyn Fn(&Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> + Send + Sync>;

/// [`Precomputed`] for a result of three inputs; the backward sees ∂L/∂y only (it captures what else it needs).
struct Precomputed3 {
    inner: Precomputed,
    backward: Backward3,
}

impl candle_core::CustomOp3 for Precomputed3 {
    fn name(&self) -> &'static str {
        self.inner.name
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.inner.cpu_fwd(s1, l1)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.inner.cuda_fwd(s1, l1)
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad_y: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        (self.backward)(grad_y)
    }
}

/// [`with_backward`] for `y` computed from `a`, `b` and `c` (detached): `backward(∂L/∂y)` returns their gradients.
pub fn with_backward3(
    (a, b, c): (&Tensor, &Tensor, &Tensor),
    y: Tensor,
    name: &'static str,
    backward: impl Fn(&Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)>
        + Send
        + Sync
        + 'static,
) -> Result<Tensor> {
    if !(a.track_op() || b.track_op() || c.track_op()) {
        return Ok(y);
    }
    let op = Precomputed3 {
        inner: Precomputed {
            name,
            output: Mutex::new(Some(y)),
            backward: Box::new(|_, _, _| candle_core::bail!("unused")),
        },
        backward: Box::new(backward),
    };
    Ok(a.apply_op3(b, c, op)?)
}

/// Softmax over the last dimension (fused), with ∂L/∂x = y ⊙ (g − Σ g ⊙ y).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let y = candle_nn::ops::softmax_last_dim(&x.detach().contiguous()?)?;
    with_backward(x, y, "softmax", |_, y, g| {
        let dot = (g * y)?.sum_keepdim(candle_core::D::Minus1)?;
        y * g.broadcast_sub(&dot)?
    })
}
