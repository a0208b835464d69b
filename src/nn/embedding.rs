//! Lookup tables: `Embedding` (token ids to vectors), learned positional embeddings and the
//! fixed sinusoidal positional encoding.

use super::init::Init;
use super::Module;
use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};

/// A table of `num` vectors of `dim`, looked up by `U32` indices of any shape:
/// `[..] -> [.., dim]` (as `torch.nn.Embedding`; weight initialised N(0, 1)).
pub struct Embedding {
    /// `[num, dim]`
    pub weight: Tensor,
}

impl Embedding {
    /// PyTorch's initialisation: N(0, 1).
    pub fn new(num: usize, dim: usize, rng: &mut Rng, device: &Device) -> Result<Embedding> {
        Embedding::with_init(num, dim, Init::Normal(1.0), rng, device)
    }
    /// An explicit initialiser (e.g. `Init::Normal(0.02)` as GPT-2).
    pub fn with_init(
        num: usize,
        dim: usize,
        init: Init,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Embedding> {
        Ok(Embedding {
            weight: init.tensor([num, dim], rng, device)?.requires_grad(),
        })
    }
}

impl Module for Embedding {
    fn forward(&self, indices: &Tensor) -> Result<Tensor> {
        self.weight.embedding(indices)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".to_string(), self.weight.clone())]
    }
}

/// Adds row `start + t` of `table [max_len, dim]` to position `t` of `x [.., T, dim]`.
fn add_positions(op: &'static str, x: &Tensor, table: &Tensor, start: usize) -> Result<Tensor> {
    let (max_len, dim) = (table.dims()[0], table.dims()[1]);
    let r = x.rank();
    if r < 2 || x.dims()[r - 1] != dim || start + x.dims()[r - 2] > max_len {
        return Err(Error::invalid(
            op,
            format!(
                "input {:?} from position {start} needs [.., T, {dim}] with start + T <= {max_len}",
                x.dims()
            ),
        ));
    }
    x.add(&table.narrow(0, start, x.dims()[r - 2])?)
}

/// Learned absolute positions: `x [.., T, dim] + weight[start..start + T]`.
pub struct PositionalEmbedding {
    /// `[max_len, dim]`
    pub weight: Tensor,
}

impl PositionalEmbedding {
    /// A table of `max_len` positions drawn from `init` (e.g. `Init::Normal(0.02)`).
    pub fn new(
        max_len: usize,
        dim: usize,
        init: Init,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<PositionalEmbedding> {
        Ok(PositionalEmbedding {
            weight: init.tensor([max_len, dim], rng, device)?.requires_grad(),
        })
    }
    /// The longest sequence the table covers.
    pub fn max_len(&self) -> usize {
        self.weight.dims()[0]
    }
    /// Adds the positions `start..start + T` (for decoding with a cache).
    pub fn forward_from(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        add_positions("PositionalEmbedding", x, &self.weight, start)
    }
}

impl Module for PositionalEmbedding {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_from(x, 0)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".to_string(), self.weight.clone())]
    }
}

/// The fixed encoding of "Attention Is All You Need" (Vaswani et al. 2017, §3.5):
/// `pe[t, 2i] = sin(t / 10000^(2i/dim))`, `pe[t, 2i+1] = cos(t / 10000^(2i/dim))`, added to
/// `x [.., T, dim]`. No parameters.
pub struct SinusoidalPositionalEncoding {
    table: Tensor,
}

impl SinusoidalPositionalEncoding {
    /// The table for `max_len` positions of `dim` (computed in f64).
    pub fn new(max_len: usize, dim: usize, device: &Device) -> Result<Self> {
        let mut pe = vec![0.0f32; max_len * dim];
        for t in 0..max_len {
            for j in 0..dim {
                let i2 = (j - j % 2) as f64;
                let angle = t as f64 / 10000f64.powf(i2 / dim as f64);
                pe[t * dim + j] = if j.is_multiple_of(2) {
                    angle.sin()
                } else {
                    angle.cos()
                } as f32;
            }
        }
        Ok(SinusoidalPositionalEncoding {
            table: Tensor::from_vec(pe, [max_len, dim], device)?,
        })
    }
    /// The table `[max_len, dim]`.
    pub fn table(&self) -> &Tensor {
        &self.table
    }
    /// Adds the positions `start..start + T`.
    pub fn forward_from(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        add_positions("SinusoidalPositionalEncoding", x, &self.table, start)
    }
}

impl Module for SinusoidalPositionalEncoding {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_from(x, 0)
    }
}
