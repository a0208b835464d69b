//! The pre-LN `TransformerBlock`, a decoder-only language model built from it
//! (`TransformerLm`), and `KvCache` for generating one token at a time.

use super::attention::{AttentionCache, MultiHeadAttention};
use super::embedding::{Embedding, PositionalEmbedding};
use super::init::Init;
use super::{Dropout, LayerNorm, Linear, Module};
use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};

/// A pre-LN Transformer layer (GPT-2 style) on `x [B, T, E]`:
/// `x = x + dropout(attn(ln1(x)))`, then `x = x + dropout(fc2(gelu(fc1(ln2(x)))))` with exact
/// GELU. Dropout acts in training mode only.
pub struct TransformerBlock {
    /// Norm before attention.
    pub ln1: LayerNorm,
    /// Self-attention.
    pub attn: MultiHeadAttention,
    /// Norm before the MLP.
    pub ln2: LayerNorm,
    /// `E -> mlp`
    pub fc1: Linear,
    /// `mlp -> E`
    pub fc2: Linear,
    drop_attn: Dropout,
    drop_mlp: Dropout,
}

impl TransformerBlock {
    /// PyTorch's default initialisation of each part; `mlp` hidden units (4E is usual);
    /// dropout probability `dropout` on both residual branches (masks seeded from `rng`).
    pub fn new(
        d_model: usize,
        heads: usize,
        mlp: usize,
        dropout: f32,
        causal: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<TransformerBlock> {
        Ok(TransformerBlock {
            ln1: LayerNorm::new(&[d_model], device)?,
            attn: MultiHeadAttention::new(d_model, heads, causal, rng, device)?,
            ln2: LayerNorm::new(&[d_model], device)?,
            fc1: Linear::new(d_model, mlp, true, rng, device)?,
            fc2: Linear::new(mlp, d_model, true, rng, device)?,
            drop_attn: Dropout::new(dropout, rng.next_u64())?,
            drop_mlp: Dropout::new(dropout, rng.next_u64())?,
        })
    }

    fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(&self.ln2.forward(x)?)?.gelu()?;
        x.add(&self.drop_mlp.forward(&self.fc2.forward(&h)?)?)
    }

    /// The block on new positions `x [B, Tn, E]`, attending over `cache` (see
    /// [`MultiHeadAttention::forward_cached`]).
    pub fn forward_cached(&self, x: &Tensor, cache: &mut AttentionCache) -> Result<Tensor> {
        let a = self.attn.forward_cached(&self.ln1.forward(x)?, cache)?;
        self.mlp(&x.add(&self.drop_attn.forward(&a)?)?)
    }
}

impl Module for TransformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.attn.forward(&self.ln1.forward(x)?)?;
        self.mlp(&x.add(&self.drop_attn.forward(&a)?)?)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let parts: [(&str, &dyn Module); 5] = [
            ("ln1", &self.ln1),
            ("attn", &self.attn),
            ("ln2", &self.ln2),
            ("fc1", &self.fc1),
            ("fc2", &self.fc2),
        ];
        parts
            .iter()
            .flat_map(|(p, m)| {
                m.parameters()
                    .into_iter()
                    .map(move |(n, t)| (format!("{p}.{n}"), t))
            })
            .collect()
    }
    fn set_training(&mut self, training: bool) {
        self.drop_attn.set_training(training);
        self.drop_mlp.set_training(training);
    }
}

/// The sizes of a [`TransformerLm`].
#[derive(Clone, Copy, Debug)]
pub struct TransformerConfig {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Context length (number of learned positions).
    pub context: usize,
    /// Number of blocks L.
    pub layers: usize,
    /// Model width E.
    pub d_model: usize,
    /// Attention heads H.
    pub heads: usize,
    /// MLP hidden units.
    pub mlp: usize,
    /// Dropout on the residual branches (training only).
    pub dropout: f32,
}

/// A decoder-only (causal) Transformer language model: token embedding plus learned
/// positions, `layers` pre-LN blocks, a final LayerNorm and a linear head to the vocabulary.
///
/// Initialisation (as the JAX yardstick `jax_charlm.py transformer`): embeddings N(0, 0.02);
/// every weight uniform in `±1/√fan_in`, with the attention and MLP output projections further
/// scaled by `1/√(2L)` (GPT-2); biases zero; LayerNorms weight 1, bias 0.
pub struct TransformerLm {
    /// `[V, E]`
    pub tok: Embedding,
    /// `[context, E]`
    pub pos: PositionalEmbedding,
    /// The blocks.
    pub blocks: Vec<TransformerBlock>,
    /// Final norm.
    pub ln_f: LayerNorm,
    /// `E -> V`
    pub head: Linear,
    /// The sizes.
    pub config: TransformerConfig,
}

impl TransformerLm {
    /// A new model drawn from `seed`.
    pub fn new(config: TransformerConfig, seed: u64, device: &Device) -> Result<TransformerLm> {
        let c = config;
        let mut rng = Rng::new(seed);
        let fan = |n: usize, scale: f32| {
            let s = scale / (n as f32).sqrt();
            Init::Uniform(-s, s)
        };
        let deep = 1.0 / (2.0 * c.layers.max(1) as f32).sqrt();
        let mut blocks = Vec::with_capacity(c.layers);
        for _ in 0..c.layers {
            let mut b = TransformerBlock::new(
                c.d_model, c.heads, c.mlp, c.dropout, true, &mut rng, device,
            )?;
            b.attn = MultiHeadAttention::with_init(
                c.d_model,
                c.heads,
                true,
                fan(c.d_model, 1.0),
                fan(c.d_model, deep),
                &mut rng,
                device,
            )?;
            b.fc1 = Linear::with_init(
                c.d_model,
                c.mlp,
                fan(c.d_model, 1.0),
                Some(Init::Zeros),
                &mut rng,
                device,
            )?;
            b.fc2 = Linear::with_init(
                c.mlp,
                c.d_model,
                fan(c.mlp, deep),
                Some(Init::Zeros),
                &mut rng,
                device,
            )?;
            blocks.push(b);
        }
        Ok(TransformerLm {
            tok: Embedding::with_init(c.vocab, c.d_model, Init::Normal(0.02), &mut rng, device)?,
            pos: PositionalEmbedding::new(
                c.context,
                c.d_model,
                Init::Normal(0.02),
                &mut rng,
                device,
            )?,
            blocks,
            ln_f: LayerNorm::new(&[c.d_model], device)?,
            head: Linear::with_init(
                c.d_model,
                c.vocab,
                fan(c.d_model, 1.0),
                Some(Init::Zeros),
                &mut rng,
                device,
            )?,
            config: c,
        })
    }

    /// Logits `[B, T, V]` of token ids `[B, T]` (`U32`, T <= context).
    pub fn logits(&self, ids: &Tensor) -> Result<Tensor> {
        let mut h = self.pos.forward(&self.tok.forward(ids)?)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        self.head.forward(&self.ln_f.forward(&h)?)
    }

    /// Logits `[B, Tn, V]` of new ids `[B, Tn]` following the positions already in `cache`,
    /// appending their keys and values. Errors when the context would overflow (see
    /// [`TransformerLm::feed`], which slides the window).
    pub fn logits_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        if cache.layers.len() != self.blocks.len() {
            cache.layers = vec![AttentionCache::default(); self.blocks.len()];
        }
        let start = cache.len();
        let mut h = self.pos.forward_from(&self.tok.forward(ids)?, start)?;
        for (b, c) in self.blocks.iter().zip(&mut cache.layers) {
            h = b.forward_cached(&h, c)?;
        }
        self.head.forward(&self.ln_f.forward(&h)?)
    }

    /// Feeds `ids` (`batch` sequences of equal length, row-major) after what `cache` holds and
    /// returns the logits of each sequence's last position, `[batch, V]`. Generating N tokens
    /// this way costs O(N·context) attention work, not O(N·context²).
    ///
    /// When the context would overflow, the window slides by recomputation: the cache is
    /// cleared and refilled from the last `context / 2` tokens (or all new ones, if more) in
    /// one causal pass. Learned absolute positions cannot be re-based inside cached keys (they
    /// went through every layer), so rolling the cache would change the model; recomputing
    /// half a window every `context / 2` tokens keeps the amortised cost O(context) per token.
    pub fn feed(&self, cache: &mut KvCache, ids: &[u32], batch: usize) -> Result<Tensor> {
        const OP: &str = "TransformerLm::feed";
        let ctx = self.config.context;
        if batch == 0 || ids.is_empty() || !ids.len().is_multiple_of(batch) {
            return Err(Error::invalid(
                OP,
                format!("{} ids do not split into {batch} sequences", ids.len()),
            ));
        }
        let tn = ids.len() / batch;
        if cache.history.len() != batch {
            cache.clear();
            cache.history = vec![Vec::new(); batch];
        }
        for (h, new) in cache.history.iter_mut().zip(ids.chunks(tn)) {
            h.extend_from_slice(new);
        }
        let dev = self.tok.weight.device();
        let (feed_ids, feed_len) = if cache.len() + tn > ctx {
            let keep = (ctx / 2).max(tn.min(ctx)).max(1);
            for l in &mut cache.layers {
                l.clear();
            }
            let mut v = Vec::with_capacity(batch * keep);
            for h in &mut cache.history {
                let cut = h.len().saturating_sub(keep);
                h.drain(..cut);
                v.extend_from_slice(h);
            }
            let keep = cache.history[0].len();
            (v, keep)
        } else {
            (ids.to_vec(), tn)
        };
        let x = Tensor::from_indices(&feed_ids, [batch, feed_len], dev)?;
        let logits = self.logits_cached(&x, cache)?;
        // Keep no more history than a window.
        for h in &mut cache.history {
            let cut = h.len().saturating_sub(ctx);
            h.drain(..cut);
        }
        let v = logits.dims()[2];
        logits.narrow(1, feed_len - 1, 1)?.reshape([batch, v])
    }
}

impl Module for TransformerLm {
    /// [`TransformerLm::logits`].
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.logits(ids)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = Vec::new();
        let mut push = |prefix: String, m: &dyn Module| {
            for (n, t) in m.parameters() {
                p.push((format!("{prefix}.{n}"), t));
            }
        };
        push("tok".into(), &self.tok);
        push("pos".into(), &self.pos);
        for (i, b) in self.blocks.iter().enumerate() {
            push(format!("blocks.{i}"), b);
        }
        push("ln_f".into(), &self.ln_f);
        push("head".into(), &self.head);
        p
    }
    fn set_training(&mut self, training: bool) {
        for b in &mut self.blocks {
            b.set_training(training);
        }
    }
}

/// Per-layer key/value caches of a [`TransformerLm`], and the token ids they hold (to slide the
/// window by recomputation).
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<AttentionCache>,
    history: Vec<Vec<u32>>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> KvCache {
        KvCache::default()
    }
    /// Cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.len())
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The ids behind the cached positions of sequence `b` (the last `len()` are cached).
    pub fn history(&self, b: usize) -> &[u32] {
        self.history.get(b).map_or(&[], |h| &h[..])
    }
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.layers.clear();
        self.history.clear();
    }
}
