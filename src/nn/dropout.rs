//! `Dropout`: zeroes elements with probability `p` in training and scales the rest by
//! `1/(1-p)`; the identity in evaluation mode. Masks come from a seeded generator.

use super::Module;
use crate::rng::Rng;
use crate::{Error, Result, Tensor};
use std::sync::Mutex;

/// Inverted dropout with a seeded mask stream (the same seed gives the same masks).
pub struct Dropout {
    p: f32,
    training: bool,
    rng: Mutex<Rng>,
}

impl Dropout {
    /// Drops with probability `p` in `[0, 1)`; masks drawn from `seed`.
    pub fn new(p: f32, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "Dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            training: true,
            rng: Mutex::new(Rng::new(seed)),
        })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        let seed = self.rng.lock().unwrap().next_u64();
        let keep = Tensor::rand(x.shape().clone(), seed, x.device())?
            .ge_scalar(self.p)?
            .mul_scalar(1.0 / (1.0 - self.p))?;
        // The mask takes x's dtype, so an F16 activation stays F16 (as in PyTorch).
        x.mul(&keep.to_dtype(x.dtype())?)
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
