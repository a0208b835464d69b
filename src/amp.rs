//! Mixed-precision training with PyTorch's AMP semantics: [`autocast`] scopes in which matmul,
//! linear layers and conv2d run in F16 while sums, softmax, normalisation and losses run in
//! F32, and a [`GradScaler`] for the loss scaling that keeps small F16 gradients from
//! flushing to zero. Parameters stay F32 ("master weights"): autocast casts them per use, and
//! the cast's backward brings their gradients back to F32.
//!
//! ```
//! use wgml::{amp, nn::{Linear, Module}, optim::{Adam, Optimizer}, Device, Tensor};
//! # fn main() -> wgml::Result<()> {
//! let dev = Device::cpu();
//! let mut rng = wgml::rng::Rng::new(0);
//! let layer = Linear::new(4, 2, true, &mut rng, &dev)?;
//! let mut opt = Adam::new(layer.parameters(), 1e-3);
//! let mut scaler = amp::GradScaler::new();
//! let x = Tensor::randn([8, 4], 1, &dev)?;
//! let loss = amp::autocast(|| layer.forward(&x)?.powf(2.0)?.mean_all())?;
//! assert_eq!(loss.dtype(), wgml::DType::F32); // pow runs in F32 under autocast
//! let mut grads = scaler.scale(&loss)?.backward()?;
//! scaler.step(&mut opt, &mut grads)?;
//! scaler.update();
//! # Ok(())
//! # }
//! ```

use crate::backprop::Gradients;
use crate::optim::Optimizer;
use crate::{no_grad, DType, Result, Tensor};
use std::cell::Cell;

thread_local! {
    static AUTOCAST: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with autocast on for this thread, with PyTorch's op lists: matmul (and so
/// `Linear`) and conv2d cast F32 inputs to F16 and return F16; softmax, log-softmax, sums,
/// exp, log, pow, reciprocal, layer norm and the losses (cross-entropy, MSE, BCE) cast F16
/// inputs to F32 and return F32; other ops (means, max, activations, pooling, attention) run
/// in their inputs' dtype, mixed F16/F32 operands promoting to F32. Nests; `backward` runs
/// with autocast off, in the dtypes the forward recorded, as PyTorch's does.
pub fn autocast<R>(f: impl FnOnce() -> R) -> R {
    set_autocast(true, f)
}

/// Whether autocast is on for this thread.
pub fn is_autocast_enabled() -> bool {
    AUTOCAST.with(|c| c.get())
}

/// Runs `f` with autocast set to `on` for this thread, restoring the previous state after.
pub(crate) fn set_autocast<R>(on: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            AUTOCAST.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(AUTOCAST.with(|c| c.replace(on)));
    f()
}

/// `t` cast to F16 when autocast is on and `t` is F32 (an op on autocast's F16 list).
pub(crate) fn to_f16(t: &Tensor) -> Result<Tensor> {
    if is_autocast_enabled() && t.dtype() == DType::F32 {
        t.to_dtype(DType::F16)
    } else {
        Ok(t.clone())
    }
}

/// `t` cast to F32 when autocast is on and `t` is F16 (an op on autocast's F32 list).
pub(crate) fn to_f32(t: &Tensor) -> Result<Tensor> {
    if is_autocast_enabled() && t.dtype() == DType::F16 {
        t.to_dtype(DType::F32)
    } else {
        Ok(t.clone())
    }
}

/// Dynamic loss scaling, as PyTorch's `torch.amp.GradScaler`: the loss is multiplied by the
/// scale before `backward`, the gradients are divided by it before the optimizer step, and a
/// step whose gradients hold an inf or NaN is skipped and the scale halved; after
/// `growth_interval` clean steps in a row the scale doubles.
///
/// The inf/NaN check runs on the gradients' device (each gradient is unscaled, multiplied by
/// zero, which turns any inf or NaN into NaN, and summed into one device scalar); `step`
/// then reads back that one float to decide, the same single wait PyTorch's `step` has.
#[derive(Clone, Debug)]
pub struct GradScaler {
    scale: f32,
    growth_factor: f32,
    backoff_factor: f32,
    growth_interval: u32,
    clean_steps: u32,
    /// Per step: whether the gradients were unscaled, and whether they held an inf or NaN.
    unscaled: Option<bool>,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler::new()
    }
}

impl GradScaler {
    /// PyTorch's defaults: scale 2¹⁶, ×2 after 2000 clean steps, ×0.5 on inf/NaN.
    pub fn new() -> GradScaler {
        GradScaler::with_settings(65536.0, 2.0, 0.5, 2000)
    }

    /// A scaler with its own initial scale, growth and back-off factors and growth interval.
    pub fn with_settings(
        init_scale: f32,
        growth_factor: f32,
        backoff_factor: f32,
        growth_interval: u32,
    ) -> GradScaler {
        GradScaler {
            scale: init_scale,
            growth_factor,
            backoff_factor,
            growth_interval: growth_interval.max(1),
            clean_steps: 0,
            unscaled: None,
        }
    }

    /// The current scale.
    pub fn scale_value(&self) -> f32 {
        self.scale
    }

    /// Clean steps since the scale last changed.
    pub fn clean_steps(&self) -> u32 {
        self.clean_steps
    }

    /// `loss · scale`, in F32 (an F16 loss is cast first, so the product cannot overflow F16).
    pub fn scale(&self, loss: &Tensor) -> Result<Tensor> {
        loss.to_dtype(DType::F32)?.mul_scalar(self.scale)
    }

    /// Divides every gradient in `grads` by the scale, in place (call before clipping, as in
    /// PyTorch); returns whether any holds an inf or NaN. At most once per step: later calls
    /// return the first answer and leave the gradients alone.
    pub fn unscale(&mut self, grads: &mut Gradients) -> Result<bool> {
        if let Some(found) = self.unscaled {
            return Ok(found);
        }
        let inv = 1.0 / self.scale;
        let found = no_grad(|| -> Result<bool> {
            let mut check: Option<Tensor> = None;
            for g in grads.values_mut() {
                let u = g.mul_scalar(inv)?;
                // inf · 0 and NaN · 0 are NaN, finite · 0 is 0: the sum is NaN iff a value
                // is not finite (it cannot overflow).
                let bad = u.mul_scalar(0.0)?.to_dtype(DType::F32)?.sum_all()?;
                check = Some(match check {
                    Some(c) => c.add(&bad)?,
                    None => bad,
                });
                *g = u;
            }
            Ok(match check {
                Some(c) => !c.item()?.is_finite(),
                None => false,
            })
        })?;
        self.unscaled = Some(found);
        Ok(found)
    }

    /// Unscales the gradients (unless [`GradScaler::unscale`] already did this step) and runs
    /// `opt.step` unless they hold an inf or NaN; returns whether the step ran. Call
    /// [`GradScaler::update`] after it.
    pub fn step(&mut self, opt: &mut dyn Optimizer, grads: &mut Gradients) -> Result<bool> {
        if self.unscale(grads)? {
            return Ok(false);
        }
        opt.step(grads)?;
        Ok(true)
    }

    /// Adjusts the scale after a step: halves it if the step found an inf or NaN, doubles it
    /// after `growth_interval` clean steps in a row. A no-op if no step was unscaled.
    pub fn update(&mut self) {
        match self.unscaled.take() {
            Some(true) => {
                self.scale *= self.backoff_factor;
                self.clean_steps = 0;
            }
            Some(false) => {
                self.clean_steps += 1;
                if self.clean_steps >= self.growth_interval {
                    let grown = self.scale * self.growth_factor;
                    // Never grow into inf: the scale would turn every loss into inf.
                    if grown.is_finite() {
                        self.scale = grown;
                    }
                    self.clean_steps = 0;
                }
            }
            None => {}
        }
    }
}
