//! `MultiHeadAttention` with PyTorch's parameters (`in_proj_weight [3E, E]`, `in_proj_bias
//! [3E]`, `out_proj`), batch-first input, optional causal masking, and a key/value cache for
//! decoding one token at a time.

use super::init::Init;
use super::{Linear, Module};
use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};

/// Keys and values of the positions seen so far by one attention layer, `[B, H, T, D]` each.
#[derive(Clone, Default)]
pub struct AttentionCache {
    kv: Option<(Tensor, Tensor)>,
}

impl AttentionCache {
    /// Cached positions.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Forgets every position.
    pub fn clear(&mut self) {
        self.kv = None;
    }
}

/// Multi-head scaled dot-product attention over `x [B, T, E]` (batch first), as
/// `torch.nn.MultiHeadAttention(E, H, batch_first=True)` with query = key = value = x:
/// `out_proj(concat_h softmax(Q_h K_hᵀ / √D) V_h)` where `[Q K V] = x · in_proj_weightᵀ +
/// in_proj_bias` and `D = E / H`. With `causal`, position i attends to positions `j <= i`.
pub struct MultiHeadAttention {
    /// `[3E, E]`: the query, key and value projections stacked (PyTorch's layout).
    pub in_proj_weight: Tensor,
    /// `[3E]`
    pub in_proj_bias: Tensor,
    /// `E -> E`
    pub out_proj: Linear,
    /// H
    pub num_heads: usize,
    /// Whether each position attends only to itself and earlier ones.
    pub causal: bool,
}

impl MultiHeadAttention {
    /// PyTorch's initialisation: Xavier-uniform `in_proj_weight`, zero `in_proj_bias` and
    /// `out_proj.bias`, `out_proj.weight` as `Linear`'s default.
    pub fn new(
        embed_dim: usize,
        num_heads: usize,
        causal: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<MultiHeadAttention> {
        let in_w = Init::GlorotUniform;
        let out_w = Init::KaimingUniform(5f32.sqrt());
        MultiHeadAttention::with_init(embed_dim, num_heads, causal, in_w, out_w, rng, device)
    }

    /// Explicit initialisers of the two weights (biases start at zero).
    #[allow(clippy::too_many_arguments)]
    pub fn with_init(
        embed_dim: usize,
        num_heads: usize,
        causal: bool,
        in_proj: Init,
        out_proj: Init,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<MultiHeadAttention> {
        if num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            return Err(Error::invalid(
                "MultiHeadAttention",
                format!("embed_dim {embed_dim} must be a multiple of num_heads {num_heads}"),
            ));
        }
        let e = embed_dim;
        Ok(MultiHeadAttention {
            in_proj_weight: in_proj.tensor([3 * e, e], rng, device)?.requires_grad(),
            in_proj_bias: Tensor::zeros([3 * e], device)?.requires_grad(),
            out_proj: Linear::with_init(e, e, out_proj, Some(Init::Zeros), rng, device)?,
            num_heads,
            causal,
        })
    }

    fn embed_dim(&self) -> usize {
        self.in_proj_weight.dims()[1]
    }

    /// `(q, k, v)`, each `[B, H, T, D]`, from `x [B, T, E]`.
    fn project(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let e = self.embed_dim();
        if x.rank() != 3 || x.dims()[2] != e {
            return Err(Error::ShapeMismatch {
                op: "MultiHeadAttention",
                lhs: x.dims().to_vec(),
                rhs: vec![0, 0, e],
            });
        }
        let (b, t, h) = (x.dims()[0], x.dims()[1], self.num_heads);
        // Three products with row blocks of the weight rather than one split afterwards: the
        // backward of splitting a [B, T, 3E] activation would pad each part to full size.
        let part = |i: usize| {
            x.matmul(&self.in_proj_weight.narrow(0, i * e, e)?.t()?)?
                .add(&self.in_proj_bias.narrow(0, i * e, e)?)?
                .reshape([b, t, h, e / h])?
                .permute(&[0, 2, 1, 3])
        };
        Ok((part(0)?, part(1)?, part(2)?))
    }

    /// `out_proj` of the heads `o [B, H, T, D]` put back side by side: `[B, T, E]`.
    fn merge(&self, o: &Tensor) -> Result<Tensor> {
        let (b, t) = (o.dims()[0], o.dims()[2]);
        let o = o
            .permute(&[0, 2, 1, 3])?
            .reshape([b, t, self.embed_dim()])?;
        self.out_proj.forward(&o)
    }

    /// Attends from the new positions `x [B, Tn, E]` over the cached positions and themselves,
    /// appending their keys and values to `cache`. With an empty cache this equals
    /// [`Module::forward`]; with `Tn = 1` the query attends to every cached key (no mask).
    pub fn forward_cached(&self, x: &Tensor, cache: &mut AttentionCache) -> Result<Tensor> {
        let (q, k, v) = self.project(x)?;
        let past = cache.len();
        let (k, v) = match &cache.kv {
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
            None => (k.contiguous()?, v.contiguous()?),
        };
        let tn = q.dims()[2];
        let o = if past == 0 {
            attention(&q, &k, &v, None, self.causal)?
        } else if tn == 1 || !self.causal {
            attention(&q, &k, &v, None, false)?
        } else {
            // New query i sits at position past + i: it sees keys j <= past + i.
            let tk = past + tn;
            let mask: Vec<f32> = (0..tn * tk)
                .map(|ij| {
                    if ij % tk <= past + ij / tk {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
                .collect();
            let mask = Tensor::from_vec(mask, [tn, tk], x.device())?;
            attention(&q, &k, &v, Some(&mask), false)?
        };
        cache.kv = Some((k, v));
        self.merge(&o)
    }
}

impl Module for MultiHeadAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (q, k, v) = self.project(x)?;
        self.merge(&attention(&q, &k, &v, None, self.causal)?)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![
            ("in_proj_weight".to_string(), self.in_proj_weight.clone()),
            ("in_proj_bias".to_string(), self.in_proj_bias.clone()),
        ];
        for (n, t) in self.out_proj.parameters() {
            p.push((format!("out_proj.{n}"), t));
        }
        p
    }
}

/// Scaled dot-product attention of `[B, H, Tq, D]` queries over `[B, H, Tk, D]` keys/values
/// (the fused op, on either device).
fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
) -> Result<Tensor> {
    super::functional::scaled_dot_product_attention(q, k, v, mask, causal, None)
}
