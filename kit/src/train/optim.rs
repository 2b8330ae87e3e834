//! AdamW (Loshchilov & Hutter 2019) as `torch.optim.AdamW`, learning-rate schedules as transformers'
//! `get_scheduler`, and gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.
//!
//! Our own optimizer rather than candle-nn's because a checkpoint must hold its moments, and candle-nn keeps them
//! private. Moments and weights are f32 whatever the activation dtype (master weights, as on a T4 in f16).
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// AdamW over a fixed list of variables.
///
/// For step t with gradient g (PyTorch's update, decoupled weight decay):
///   θ ← θ − lr·λ·θ;  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
///   θ ← θ − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
pub struct AdamW {
    pub vars: Vec<Var>,
    pub params: AdamWParams,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: usize,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, params: AdamWParams) -> Result<Self> {
        let zeros = |v: &Var| Tensor::zeros(v.shape(), DType::F32, v.device());
        let m = vars.iter().map(zeros).collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars.iter().map(zeros).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW {
            vars,
            params,
            m,
            v,
            step: 0,
        })
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    /// One update with `grads[i]` the gradient of `vars[i]` (None: no gradient reached it; it is left as is).
    pub fn step(&mut self, grads: &[Option<Tensor>]) -> Result<()> {
        let p = self.params;
        self.step += 1;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - p.beta1.powi(t), 1.0 - p.beta2.powi(t));
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = &grads[i] else { continue };
            let g = g.to_dtype(DType::F32)?;
            self.m[i] = ((&self.m[i] * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            self.v[i] = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let theta = var.as_tensor().to_dtype(DType::F32)?;
            let theta = (&theta * (1.0 - p.lr * p.weight_decay))?;
            let denom = ((&self.v[i] / bc2)?.sqrt()? + p.eps)?;
            let update = ((&self.m[i] / bc1)? / denom)?;
            var.set(&(theta - (update * p.lr)?)?.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    /// Moments and step, as safetensors (`m.<i>`, `v.<i>`, `step`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            tensors.insert(format!("m.{i}"), m.to_device(&candle_core::Device::Cpu)?);
            tensors.insert(format!("v.{i}"), v.to_device(&candle_core::Device::Cpu)?);
        }
        tensors.insert(
            "step".into(),
            Tensor::new(&[self.step as u32], &candle_core::Device::Cpu)?,
        );
        crate::io::save_tensors_atomic(path, &tensors)
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .vars
            .first()
            .map(|v| v.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let t = candle_core::safetensors::load(path, &dev)
            .map_err(|e| Error::file(path, format!("cannot read optimizer state: {e}")))?;
        for i in 0..self.vars.len() {
            for (name, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{name}.{i}");
                let x = t
                    .get(&key)
                    .ok_or_else(|| Error::field(path, &key, "missing (the checkpoint belongs to another adapter?)"))?;
                if x.shape() != self.vars[i].shape() {
                    return Err(Error::field(
                        path,
                        &key,
                        format!("shape {:?}, expected {:?}", x.shape(), self.vars[i].shape()),
                    ));
                }
                *slot = x.clone();
            }
        }
        let step = t.get("step").ok_or_else(|| Error::field(path, "step", "missing"))?;
        self.step = step.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }
}

/// √(Σ‖g‖²) over all gradients, and the factor `clip_grad_norm_` scales them by: max_norm / (norm + 1e-6) when the
/// norm exceeds max_norm, else 1.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let norm = squared_norm(grads.iter().flatten())?.sqrt();
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        let c = max_norm / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            *g = (&*g * c)?;
        }
    }
    Ok(norm)
}

/// Σ‖g‖² over `grads`, with one device-to-host read (not one per tensor).
pub fn squared_norm<'t>(grads: impl IntoIterator<Item = &'t Tensor>) -> Result<f64> {
    let parts: Vec<Tensor> = grads
        .into_iter()
        .map(|g| g.to_dtype(DType::F32)?.sqr()?.sum_all())
        .collect::<candle_core::Result<_>>()?;
    if parts.is_empty() {
        return Ok(0.0);
    }
    Ok(Tensor::stack(&parts, 0)?.sum_all()?.to_scalar::<f32>()? as f64)
}

/// transformers' `lr_scheduler_type`, spelled as there; the schedulers that need `lr_scheduler_kwargs` use
/// transformers' default ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SchedulerType {
    /// Linear warm-up, then linear decay to 0.
    #[default]
    Linear,
    /// Linear warm-up, then half a cosine down to 0.
    Cosine,
    /// Cosine with hard restarts, with transformers' default of one cycle (the same curve as `cosine`).
    CosineWithRestarts,
    /// Linear warm-up, then polynomial decay to 1e-7 with power 1 (transformers' defaults).
    Polynomial,
    /// The learning rate throughout; no warm-up.
    Constant,
    /// Linear warm-up, then constant.
    ConstantWithWarmup,
    /// Linear warm-up, then decay ∝ 1/√step, with timescale `warmup` (10 000 without warm-up).
    InverseSqrt,
}

/// The end point of transformers' polynomial decay (its default `lr_end`).
pub const POLYNOMIAL_LR_END: f64 = 1e-7;

/// Learning rate for optimizer step `step` (0-based) of `total`, as transformers' schedulers compute it.
pub fn lr_at(kind: SchedulerType, base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    use SchedulerType::*;
    let s = step as f64;
    if step < warmup && kind != Constant {
        return base * s / warmup.max(1) as f64;
    }
    let progress = (s - warmup as f64) / (total.saturating_sub(warmup)).max(1) as f64;
    match kind {
        Constant | ConstantWithWarmup => base,
        Linear => base * (1.0 - progress).max(0.0),
        Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()).max(0.0),
        // num_cycles = 1: one cosine from the peak to 0 over the decay; at the end, 0.
        CosineWithRestarts if progress >= 1.0 => 0.0,
        CosineWithRestarts => base * 0.5 * (1.0 + (std::f64::consts::PI * (progress % 1.0)).cos()).max(0.0),
        Polynomial if step > total => POLYNOMIAL_LR_END,
        Polynomial => (base - POLYNOMIAL_LR_END) * (1.0 - progress) + POLYNOMIAL_LR_END,
        InverseSqrt => {
            let timescale = if warmup > 0 { warmup as f64 } else { 10_000.0 };
            base / ((s + timescale - warmup as f64) / timescale).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adamw_matches_the_hand_computed_first_two_steps() {
        // θ = 1, g = 0.5 (constant), lr = 0.1, β = (0.9, 0.999), ε = 1e-8, λ = 0.01.
        // Step 1: θ ← 1·(1 − 0.001) = 0.999; m̂ = 0.5, v̂ = 0.25 → θ ← 0.999 − 0.1·0.5/(0.5 + 1e-8) = 0.899.
        // Step 2: θ ← 0.899·0.999 = 0.898101; m̂ = v̂ ratio again 1 → θ ← 0.798101 (up to ε).
        let var = Var::new(&[1f32], &Device::Cpu).unwrap();
        let params = AdamWParams {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        let mut opt = AdamW::new(vec![var.clone()], params).unwrap();
        let g = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
        opt.step(&[Some(g.clone())]).unwrap();
        let x = var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((x - 0.899).abs() < 1e-6, "{x}");
        opt.step(&[Some(g)]).unwrap();
        let x = var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((x - 0.798101).abs() < 1e-6, "{x}");
    }

    #[test]
    fn schedules_follow_transformers() {
        use SchedulerType::*;
        // Warmup 2 of 10 steps, base 1.0: 0, 0.5, then linear decay 1.0 → 0 over steps 2..10.
        assert_eq!(lr_at(Linear, 1.0, 0, 2, 10), 0.0);
        assert_eq!(lr_at(Linear, 1.0, 1, 2, 10), 0.5);
        assert_eq!(lr_at(Linear, 1.0, 2, 2, 10), 1.0);
        assert!((lr_at(Linear, 1.0, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert!((lr_at(Cosine, 1.0, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert!((lr_at(Cosine, 1.0, 4, 2, 10) - (0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()))).abs() < 1e-12);
        assert_eq!(lr_at(Constant, 1.0, 0, 2, 10), 1.0);
        assert_eq!(lr_at(ConstantWithWarmup, 1.0, 1, 2, 10), 0.5);
        // transformers' defaults: one cycle of restarts is the plain cosine, 0 at the end.
        assert!((lr_at(CosineWithRestarts, 1.0, 4, 2, 10) - lr_at(Cosine, 1.0, 4, 2, 10)).abs() < 1e-12);
        assert_eq!(lr_at(CosineWithRestarts, 1.0, 10, 2, 10), 0.0);
        // Polynomial (power 1, lr_end 1e-7): halfway, (1 − 1e-7)·0.5 + 1e-7.
        assert!((lr_at(Polynomial, 1.0, 6, 2, 10) - (0.5 * (1.0 - 1e-7) + 1e-7)).abs() < 1e-12);
        assert_eq!(lr_at(Polynomial, 1.0, 11, 2, 10), 1e-7);
        assert_eq!(lr_at(Polynomial, 1.0, 1, 2, 10), 0.5);
        // Inverse square root, timescale = warmup = 2: step 8 → 1/√(8/2) = 0.5; no warm-up: timescale 10 000.
        assert!((lr_at(InverseSqrt, 1.0, 8, 2, 10) - 0.5).abs() < 1e-12);
        assert_eq!(lr_at(InverseSqrt, 1.0, 0, 0, 10), 1.0);
        assert!((lr_at(InverseSqrt, 1.0, 30_000, 0, 10) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let mut g = vec![
            Some(Tensor::new(&[3f32], &Device::Cpu).unwrap()),
            None,
            Some(Tensor::new(&[4f32], &Device::Cpu).unwrap()),
        ];
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-9);
        let a = g[0].as_ref().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((a - 0.6).abs() < 1e-5, "{a}");
    }
}
