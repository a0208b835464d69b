//! A decoder-only character-level Transformer on Shakespeare (pre-LN, learned positions, exact
//! GELU, fused attention and layer norm), trained with AdamW through the shared harness in
//! `common/lm.rs`; the sample at the end is generated with a key/value cache (one position
//! per character, not a full forward).
//!
//! The defaults are the model of the JAX yardstick `../shared/anchors/jax_charlm.py
//! transformer`: 4 layers, d_model 128, 4 heads, MLP 512, context 128, batch 32, AdamW lr
//! 1e-3 with weight decay 0.01, global-norm clip 1.0, no dropout.
//!
//! `cargo run --release --example char_transformer -- [--minutes 10] [--device cpu|gpu]
//!  [--layers 4] [--d-model 128] [--heads 4] [--mlp 512] [--dropout 0] [--save PATH] ...`

#[path = "common/lm.rs"]
mod lm;

use wgml::nn::{KvCache, Module, TransformerConfig, TransformerLm};
use wgml::optim::Adam;
use wgml::{no_grad, Result, Tensor};

impl lm::CharLm for TransformerLm {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        TransformerLm::logits(self, x)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Module::parameters(self)
    }
    fn set_training(&mut self, training: bool) {
        Module::set_training(self, training)
    }
    fn generate(
        &self,
        prompt: &[u32],
        n: usize,
        pick: &mut dyn FnMut(&[f32]) -> u32,
    ) -> Result<Vec<u32>> {
        no_grad(|| {
            let mut cache = KvCache::new();
            let start = if prompt.is_empty() { &[0][..] } else { prompt };
            let mut logits = self.feed(&mut cache, start, 1)?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let next = pick(&logits.to_vec()?);
                out.push(next);
                logits = self.feed(&mut cache, &[next], 1)?;
            }
            Ok(out)
        })
    }
}

fn main() -> Result<()> {
    let args = lm::parse_args(
        "char_transformer",
        1e-3,
        &[
            ("--layers", "4", "Transformer blocks"),
            ("--d-model", "128", "model width"),
            ("--heads", "4", "attention heads"),
            ("--mlp", "512", "MLP hidden units"),
            ("--dropout", "0", "dropout on the residual branches"),
            ("--weight-decay", "0.01", "AdamW decoupled weight decay"),
        ],
    );
    let dev = lm::device(&args)?;
    let corpus = lm::corpus(&args)?;
    let config = TransformerConfig {
        vocab: corpus.vocab_size(),
        context: args.context,
        layers: args.usize("--layers"),
        d_model: args.usize("--d-model"),
        heads: args.usize("--heads"),
        mlp: args.usize("--mlp"),
        dropout: args.f32("--dropout"),
    };
    if lm::Ranks::new(&args)?.is_main() {
        println!("model: {config:?}");
    }
    let mut model = TransformerLm::new(config, args.seed, &dev)?;
    let mut opt = Adam::adamw(
        Module::parameters(&model),
        args.lr,
        args.f32("--weight-decay"),
    );
    lm::run(&mut model, &mut opt, &corpus, &args, &dev)?;
    Ok(())
}
