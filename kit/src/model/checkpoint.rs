//! Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"): a decoder layer's
//! activations are not kept for the backward; the layer runs again there, from its input, to get them.
//!
//! The layer's output is attached to its input by one op; that op's backward recomputes the layer with a graph of
//! its own, differentiates ⟨y, ∂L/∂y⟩ through it, returns ∂L/∂x, and stashes the gradients of the layer's A and B
//! in the adapter's state ([`AdapterState::backward`] adds them to the step's gradients). Dropout draws the same
//! masks in the recomputation: each checkpointed layer draws its masks from a stream of its own, seeded by one draw
//! from the adapter's (so with dropout the masks differ from those of a run without checkpointing, as in PyTorch).
//! Memory: the inputs of every layer plus one layer's activations, instead of every layer's; time: one more forward
//! of each layer.
use std::sync::Arc;

use candle_core::{Tensor, Var};

use super::lora_slot::AdapterState;
use crate::Result;

/// `run(x)` with its activations recomputed in the backward. `x` must carry a graph (else nothing upstream needs
/// ∂L/∂x and the adapter's own gradients would be lost: run such a layer plainly).
pub fn checkpointed(
    x: &Tensor,
    state: &Arc<AdapterState>,
    run: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let seed = state.draw_dropout_seed()?;
    let y = state.with_dropout_seed(seed, || run(&x.detach()))??.detach();
    let state = state.clone();
    let err = |e: crate::Error| candle_core::Error::Msg(e.to_string());
    crate::autograd::with_backward(x, y, "checkpointed-layer", move |x, _, g| {
        let input = Var::from_tensor(&x.detach())?;
        let y = state
            .with_dropout_seed(seed, || run(input.as_tensor()))
            .and_then(|y| y)
            .map_err(err)?;
        let grads = (y * g)?.sum_all()?.backward()?;
        state.stash_checkpointed_gradients(&grads).map_err(err)?;
        match grads.get(input.as_tensor()) {
            Some(dx) => Ok(dx.clone()),
            None => x.zeros_like(),
        }
    })
}
