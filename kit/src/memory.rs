//! How much memory QLoRA training needs, before trying: the lecture's point that VRAM is the bottleneck, as numbers.
//!
//! A rough plan, stated so a student can check it by hand:
//! - frozen base: parameters × bits / 8 bytes (4-bit blocks carry about 0.5 bit of scales on top: 4.5 bits);
//! - LoRA: about `lora_fraction` of the base's parameters, each kept in f32 with its gradient and AdamW's two moments
//!   (16 bytes);
//! - activations: batch × sequence × hidden × layers × `bytes_per_activation` × 16 (the tensors one decoder layer
//!   keeps for the backward, as a round factor); with a vocabulary V the logits add batch × sequence × V × 4 × 2.

/// One model's memory plan, in GiB.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// The model, as the table names it.
    pub name: String,
    /// The frozen base weights.
    pub base_gib: f64,
    /// LoRA's weights, gradients and AdamW moments.
    pub lora_gib: f64,
    /// What the forward keeps for the backward, logits included.
    pub activations_gib: f64,
}

impl MemoryPlan {
    /// Plan QLoRA training of `shape` at `bits` per base weight, with LoRA ≈ 1% of the parameters, a batch of `batch`
    /// sequences of `seq` tokens, and activations of `act_bytes` bytes (2 for f16 on a T4, 4 for f32 on a CPU).
    pub fn new(name: &str, shape: ModelShape, bits: f64, batch: usize, seq: usize, act_bytes: f64) -> MemoryPlan {
        let tokens = (batch * seq) as f64;
        MemoryPlan {
            name: name.to_string(),
            base_gib: shape.params * bits / 8.0 / GIB,
            lora_gib: shape.params * 0.01 * 16.0 / GIB,
            activations_gib: (tokens * shape.hidden as f64 * shape.layers as f64 * act_bytes * 16.0
                + tokens * shape.vocab as f64 * 8.0)
                / GIB,
        }
    }

    /// Base + LoRA + activations.
    pub fn total_gib(&self) -> f64 {
        self.base_gib + self.lora_gib + self.activations_gib
    }

    /// Plans for the course's model sizes (0.27B, 0.5B, 1B, 3B) at 4.5 bits, batch 4 × 512 tokens, f16
    /// activations.
    pub fn course() -> Vec<MemoryPlan> {
        let m = |params: f64, hidden, layers, vocab| ModelShape {
            params,
            hidden,
            layers,
            vocab,
        };
        [
            ("Gemma 3 270M", m(0.27e9, 640, 18, 262_144)),
            ("Qwen2.5 0.5B", m(0.49e9, 896, 24, 151_936)),
            ("Sarashina2.2 1B", m(1.4e9, 1792, 24, 102_400)),
            ("Qwen2.5 3B", m(3.1e9, 2048, 36, 151_936)),
        ]
        .into_iter()
        .map(|(n, s)| MemoryPlan::new(n, s, 4.5, 4, 512, 2.0))
        .collect()
    }
}

/// The shape of a model, enough to plan memory.
#[derive(Debug, Clone, Copy)]
pub struct ModelShape {
    /// Number of parameters.
    pub params: f64,
    /// Hidden size.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

impl ModelShape {
    /// The shape of a loaded model.
    pub fn of(model: &crate::model::Model) -> ModelShape {
        let c = model.config();
        ModelShape {
            params: model.decoder.num_parameters() as f64,
            hidden: c.hidden_size,
            layers: c.num_hidden_layers,
            vocab: c.vocab_size,
        }
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_adds_up_by_hand() {
        // 1e9 params at 4 bits = 0.5e9 bytes; LoRA 1e7 params × 16 B = 1.6e8 B;
        // activations: 1 × 10 tokens × 100 × 2 layers × 2 B × 16 = 64_000 B, logits 10 × 1000 × 8 = 80_000 B.
        let p = MemoryPlan::new(
            "x",
            ModelShape {
                params: 1e9,
                hidden: 100,
                layers: 2,
                vocab: 1000,
            },
            4.0,
            1,
            10,
            2.0,
        );
        assert!((p.base_gib * GIB - 0.5e9).abs() < 1.0);
        assert!((p.lora_gib * GIB - 1.6e8).abs() < 1.0);
        assert!((p.activations_gib * GIB - 144_000.0).abs() < 1e-6);
        assert_eq!(MemoryPlan::course().len(), 4);
    }
}
