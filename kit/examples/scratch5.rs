use candle_core::{IndexOp, Tensor};
use kit::lora::{self, LoraConfig};
use kit::prelude::*;
fn main() -> anyhow::Result<()> {
    let mut model = Model::load("smollm2-135m", &LoadOptions::default())?;
    let adapter = lora::attach(
        &mut model.decoder,
        &LoraConfig {
            r: 16,
            lora_alpha: 32.0,
            ..Default::default()
        },
    )?;
    adapter.set_training(true);
    let (b, s) = (1usize, 256usize);
    let ids: Vec<u32> = (0..b * s).map(|i| (i * 7919 % 40_000 + 100) as u32).collect();
    let ids = Tensor::from_vec(ids, (b, s), model.device())?;
    for _ in 0..2 {
        let t0 = std::time::Instant::now();
        let h = model.decoder.forward_hidden(&ids, None, None)?;
        let t1 = t0.elapsed();
        let logits = model.decoder.logits(&h)?;
        let t2 = t0.elapsed();
        let v = logits.dim(2)?;
        let pred = logits.i((.., ..s - 1, ..))?.reshape((b * (s - 1), v))?;
        let target = ids.i((.., 1..))?.contiguous()?.flatten_all()?;
        let loss = candle_nn::loss::cross_entropy(&pred, &target)?;
        let t3 = t0.elapsed();
        let g = loss.backward()?;
        let t4 = t0.elapsed();
        println!(
            "body {:?} head {:?} loss {:?} backward {:?} (grads {})",
            t1,
            t2 - t1,
            t3 - t2,
            t4 - t3,
            g.get_ids().count()
        );
    }
    Ok(())
}
