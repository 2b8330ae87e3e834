use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, Var, D};
use kit::model::FrozenWeight;
use std::time::Instant;
fn t<F: FnMut() -> anyhow::Result<()>>(name: &str, mut f: F) -> anyhow::Result<()> {
    f()?;
    let t0 = Instant::now();
    for _ in 0..5 {
        f()?;
    }
    println!("{name}: {:.2} ms", t0.elapsed().as_secs_f64() * 200.0);
    Ok(())
}
fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (1536, 576), &dev)?;
    let q = FrozenWeight::Quantized(std::sync::Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0)?));
    let d = FrozenWeight::Dense(w.clone());
    let x = Tensor::randn(0f32, 1.0, (1, 256, 576), &dev)?;
    let xv = Var::from_tensor(&x)?;
    t("dense matmul_t", || {
        kit::quant::matmul_t(&x, &w)?;
        Ok(())
    })?;
    t("frozen dense no-grad", || {
        kit::quant::frozen_linear(&x, &d)?;
        Ok(())
    })?;
    t("frozen dense tracked", || {
        kit::quant::frozen_linear(xv.as_tensor(), &d)?;
        Ok(())
    })?;
    t("frozen q8 tracked", || {
        kit::quant::frozen_linear(xv.as_tensor(), &q)?;
        Ok(())
    })?;
    t("dequantize q8", || {
        if let FrozenWeight::Quantized(q) = &q {
            q.dequantize(&dev)?;
        }
        Ok(())
    })?;
    t("fwd+bwd q8", || {
        let y = kit::quant::frozen_linear(xv.as_tensor(), &q)?;
        y.sum_all()?.backward()?;
        Ok(())
    })?;
    let s = Tensor::randn(0f32, 1.0, (1, 9, 256, 256), &dev)?;
    let sv = Var::from_tensor(&s)?;
    t("softmax composite", || {
        candle_nn::ops::softmax(sv.as_tensor(), D::Minus1)?;
        Ok(())
    })?;
    t("softmax fused", || {
        candle_nn::ops::softmax_last_dim(&s)?;
        Ok(())
    })?;
    t("softmax composite fwd+bwd", || {
        candle_nn::ops::softmax(sv.as_tensor(), D::Minus1)?
            .sum_all()?
            .backward()?;
        Ok(())
    })?;
    let xs = Tensor::randn(0f32, 1.0, (1, 256, 1536), &dev)?;
    let xsv = Var::from_tensor(&xs)?;
    t("silu*up fwd+bwd", || {
        (xsv.as_tensor().silu()? * xsv.as_tensor())?.sum_all()?.backward()?;
        Ok(())
    })?;
    let _ = DType::F32;
    Ok(())
}
