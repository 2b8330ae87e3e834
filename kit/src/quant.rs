//! Frozen base weights that pass gradients to their input and never to themselves.
//!
//! candle's `QMatMul::forward` drops the input gradient (`apply_op1_no_bwd`), and its `matmul` backward computes and
//! keeps a full-size gradient for a frozen dense weight until the end of the backward pass. QLoRA needs neither: the
//! base is constant, only the input gradient `∂L/∂x = ∂L/∂y · W` is wanted. So the forward runs on the fastest
//! path outside the graph (quantized matmul, or dense matmul), and a custom op re-attaches the result to `x` with a
//! backward that dequantizes `W` on the fly (Dettmers et al. 2023, "QLoRA", §3: the frozen 4-bit base is
//! dequantized to the compute dtype for the backward pass; no gradient is stored for it).
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

use crate::{Error, Result};

/// A frozen weight of shape (out_features, in_features). Defined here, with the kernels that multiply by it, so that
/// this layer depends on nothing above it; `kit::model` re-exports it.
#[derive(Debug, Clone)]
pub enum FrozenWeight {
    /// A dense f32/f16/bf16 tensor (never a `Var`).
    Dense(Tensor),
    /// A GGML-quantized tensor kept quantized in memory.
    Quantized(Arc<QTensor>),
}

impl FrozenWeight {
    pub fn out_features(&self) -> usize {
        match self {
            FrozenWeight::Dense(w) => w.dims()[0],
            FrozenWeight::Quantized(q) => q.shape().dims()[0],
        }
    }
    pub fn in_features(&self) -> usize {
        match self {
            FrozenWeight::Dense(w) => w.dims()[1],
            FrozenWeight::Quantized(q) => q.shape().dims()[1],
        }
    }
    pub fn device(&self) -> candle_core::Device {
        match self {
            FrozenWeight::Dense(w) => w.device().clone(),
            FrozenWeight::Quantized(q) => q.device(),
        }
    }
}

/// Row count above which dequantizing W and running the dense GEMM beats candle's quantized CPU kernel, per type
/// (`None`: the kernel always wins). Measured with `cargo bench -p kit --bench qmatmul` on 2 cores, shapes 576×576,
/// 1536×576 and 640×2048 (median ms; kernel vs dequantize + GEMM):
/// - Q4K / Q6K (SIMD kernels): the kernel is as fast or faster at every row count (640×2048 at 1024 rows: Q4K
///   23.8 vs 27.0, at 256 rows 7.1 vs 13.5).
/// - Q4_0 / Q8_0 (SIMD kernels): the kernel wins up to ~8 rows, it is even at ~32 and 2–6× slower from 64 rows on
///   (1536×576 Q8_0: 64 rows 6.8 vs 2.6, 1024 rows 90 vs 22).
/// - Q4_1 / Q5_0 / Q5_1 (scalar kernels in candle): even at 1 row, 2–3× slower at 8 rows, ~30× slower at 1024 rows.
///   Q4_1 runs in kit's own kernel (`qgemv`) where the CPU has AVX2, up to 32 rows like Q8_0.
fn dequantize_above(dtype: GgmlDType) -> Option<usize> {
    match dtype {
        GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K | GgmlDType::Q8K => None,
        GgmlDType::Q4_0 | GgmlDType::Q8_0 => Some(32),
        // kit's own kernel (`qgemv`) where the CPU runs it.
        GgmlDType::Q4_1 if crate::qgemv::available() => Some(32),
        _ => Some(4),
    }
}

/// y = x · Wᵀ for a frozen W, without building a graph. With `exact`, quantized weights are dequantized and
/// multiplied densely — the arithmetic QLoRA prescribes for training; otherwise the fastest path is taken
/// (candle's quantized kernels also quantize the activations to 8 bits).
pub fn frozen_matmul(x: &Tensor, w: &FrozenWeight, exact: bool) -> Result<Tensor> {
    match w {
        FrozenWeight::Dense(w) => matmul_t(x, w),
        FrozenWeight::Quantized(q) => {
            if !runs_quantized(x, q, exact)? {
                let w = q.dequantize(x.device())?.to_dtype(x.dtype())?;
                return matmul_t(x, &w);
            }
            if crate::qgemv::applies(x, q) {
                return crate::qgemv::matmul_t(x, q);
            }
            let dtype = x.dtype();
            let mm = QMatMul::from_arc(q.clone())?;
            Ok(mm.forward(&x.to_dtype(DType::F32)?.contiguous()?)?.to_dtype(dtype)?)
        }
    }
}

/// Whether [`frozen_matmul`] multiplies `x` by `q` in a quantized kernel (kit's `qgemv` or candle's): never when `exact`, else when `x`
/// has few enough rows for the kernel to win. Thresholds measured on the CPU; on a GPU they are a guess
/// (dequantize + cuBLAS is also exact there).
pub fn runs_quantized(x: &Tensor, q: &QTensor, exact: bool) -> Result<bool> {
    let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
    Ok(!exact && dequantize_above(q.dtype()).is_none_or(|n| rows <= n))
}

/// x · Wᵀ for x of any rank (…, in): the leading dimensions are folded into one so that a single 2-D GEMM runs
/// (candle's batched `broadcast_matmul` against a stride-0 expanded weight is several times slower).
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inp = *dims.last().ok_or_else(|| Error::msg("matmul of a scalar"))?;
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let x2 = x.reshape((rows, inp))?;
    let y = if rows == 1 && x.device().is_cpu() && w.dim(0)? >= GEMV_SPLIT_ROWS {
        gemv_t_parallel(&x2, w)?
    } else {
        x2.matmul(&w.t()?)?
    };
    let mut out = dims;
    *out.last_mut().unwrap() = w.dim(0)?;
    Ok(y.reshape(out)?)
}

/// Output features from which a one-row product is split across threads (below, the split costs more than it saves).
const GEMV_SPLIT_ROWS: usize = 4096;

/// x · Wᵀ for one row x (1, in): the `gemm` crate multiplies a single row on one thread, so W's rows are cut into
/// one block per thread and the blocks multiplied in parallel (each output is still one dot product, computed as
/// before). Batch-1 decoding through a dense LM head (Gemma: 262,144 × 640) is bound by reading W.
fn gemv_t_parallel(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    use rayon::prelude::*;
    let out = w.dim(0)?;
    let threads = rayon::current_num_threads().max(1);
    let block = out.div_ceil(threads);
    let parts: Vec<Tensor> = (0..out.div_ceil(block))
        .into_par_iter()
        .map(|i| {
            let len = block.min(out - i * block);
            Ok(x.matmul(&w.narrow(0, i * block, len)?.t()?)?)
        })
        .collect::<Result<_>>()?;
    Ok(Tensor::cat(&parts, 1)?)
}

/// x · W for x of any rank (…, out) and W (out, in): the backward of [`matmul_t`].
pub fn matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().ok_or_else(|| Error::msg("matmul of a scalar"))?;
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((rows, k))?.matmul(w)?;
    let mut out = dims;
    *out.last_mut().unwrap() = w.dim(1)?;
    Ok(y.reshape(out)?)
}

/// W as a dense tensor of `dtype` (dequantized on the fly for quantized weights; nothing is cached).
pub fn dense_weight(w: &FrozenWeight, dtype: DType) -> Result<Tensor> {
    match w {
        FrozenWeight::Dense(w) => Ok(w.to_dtype(dtype)?),
        FrozenWeight::Quantized(q) => Ok(q.dequantize(&q.device())?.to_dtype(dtype)?),
    }
}

/// y = x · Wᵀ, differentiable with respect to `x` only. Without a graph upstream this is just the fast matmul.
/// The forward is `exact` (see [`frozen_matmul`]) whenever a gradient will flow, or when the caller asks for it.
pub fn frozen_linear(x: &Tensor, w: &FrozenWeight) -> Result<Tensor> {
    frozen_linear_with(x, w, false)
}

pub fn frozen_linear_with(x: &Tensor, w: &FrozenWeight, exact: bool) -> Result<Tensor> {
    let y = frozen_matmul(&x.detach(), w, exact || x.track_op())?;
    let weight = w.clone();
    // ∂L/∂x = ∂L/∂y · W, with W dequantized for this product only.
    crate::autograd::with_backward(x, y, "frozen-linear", move |_, _, g| {
        let w = dense_weight(&weight, g.dtype()).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        matmul(g, &w).map_err(|e| candle_core::Error::Msg(e.to_string()))
    })
}

/// Quantize a dense weight (out, in) for `load_in_4bit`: Q4K when `in` is a multiple of 256 (K-quant blocks),
/// else Q4_0 when it is a multiple of 32, else Q8_0 would not fit either and the weight stays dense (`None`).
pub fn quantize_weight(w: &Tensor, target: GgmlDType) -> Result<Option<Arc<QTensor>>> {
    let in_features = *w.dims().last().ok_or_else(|| Error::msg("cannot quantize a scalar"))?;
    let dtype = match target {
        t if in_features % t.block_size() == 0 => t,
        _ if in_features % 32 == 0 => GgmlDType::Q4_0,
        _ => return Ok(None),
    };
    Ok(Some(Arc::new(QTensor::quantize(&w.to_dtype(DType::F32)?, dtype)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_one_row_product_split_across_threads_equals_the_plain_product() {
        let dev = Device::Cpu;
        // 5,003 output features: not a multiple of any thread count, so the last block is short.
        let w = Tensor::randn(0f32, 1.0, (5003, 64), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 1, 64), &dev).unwrap();
        let got = matmul_t(&x, &w).unwrap();
        assert_eq!(got.dims(), &[1, 1, 5003]);
        let want = x.reshape((1, 64)).unwrap().matmul(&w.t().unwrap()).unwrap();
        let diff = (got.reshape((1, 5003)).unwrap() - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }
}
