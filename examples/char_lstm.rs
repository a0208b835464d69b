//! A stacked character-level LSTM language model on Shakespeare: embedding 64 → 2 × LSTM 128 →
//! Linear to the vocabulary, trained with Adam 2e-3 and global-norm clipping 1.0 on batches of
//! 32 random windows of 128 characters — the model of the JAX yardstick
//! `shared/anchors/jax_charlm.py lstm`. Every window starts from a zero state: no state is
//! carried between windows (as in the yardstick), so truncated BPTT is over each window.
//! Each LSTM layer is one fused op over the whole window (`Tensor::lstm`).
//!
//! `cargo run --release --example char_lstm -- [--minutes 10] [--device cpu|gpu|gpu:N]
//!  [--layers 2] [--hidden 128] [--embed 64] [--context 128] [--batch-size 32] [--lr 2e-3]
//!  [--save lstm.safetensors] [--load lstm.safetensors] [--prompt "ROMEO."] [--temperature 0.8]`
//!
//! With `--load` and `--minutes 0` it only samples from the checkpoint. The flags shared by the
//! language-model examples are in `examples/common/lm.rs`.

#[path = "common/lm.rs"]
mod lm;

use wgml::nn::{Linear, Lstm, LstmConfig, Module};
use wgml::optim::Adam;
use wgml::rng::Rng;
use wgml::{no_grad, Result, Tensor};

/// Embedding → stacked LSTM → Linear to the vocabulary.
struct CharLstm {
    /// `[V, E]`, N(0, 0.1) as in the yardstick.
    embedding: Tensor,
    lstm: Lstm,
    head: Linear,
}

impl CharLstm {
    /// Logits `[T, B, V]` for time-major ids `[T, B]`, from `state` (zeros when `None`), and
    /// the final state.
    fn run(
        &self,
        ids: &Tensor,
        state: Option<(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (t, b) = (ids.dims()[0], ids.dims()[1]);
        let x = self.embedding.embedding(ids)?;
        let (y, st) = self.lstm.forward(&x, state)?;
        let h = self.lstm.hidden_size();
        let logits = self.head.forward(&y.reshape([t * b, h])?)?;
        let v = logits.dims()[1];
        Ok((logits.reshape([t, b, v])?, st))
    }
}

impl lm::CharLm for CharLstm {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        // The LSTM runs time-major: transpose the ids (cheap), not the activations.
        let (logits, _) = self.run(&x.t()?.contiguous()?, None)?;
        logits.transpose(0, 1)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("embedding.weight".to_string(), self.embedding.clone())];
        let prefixed = |pre: &str, v: Vec<(String, Tensor)>| {
            v.into_iter()
                .map(|(n, t)| (format!("{pre}.{n}"), t))
                .collect::<Vec<_>>()
        };
        p.extend(prefixed("lstm", self.lstm.parameters()));
        p.extend(prefixed("head", self.head.parameters()));
        p
    }
    fn set_training(&mut self, training: bool) {
        self.lstm.set_training(training);
    }
    fn generate(
        &self,
        prompt: &[u32],
        n: usize,
        pick: &mut dyn FnMut(&[f32]) -> u32,
    ) -> Result<Vec<u32>> {
        no_grad(|| {
            let dev = self.embedding.device();
            let prompt = if prompt.is_empty() { &[0][..] } else { prompt };
            let ids = Tensor::from_indices(prompt, [prompt.len(), 1], dev)?;
            let (mut logits, mut state) = self.run(&ids, None)?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let last = logits.narrow(0, logits.dims()[0] - 1, 1)?.to_vec()?;
                let next = pick(&last);
                out.push(next);
                let ids = Tensor::from_indices(&[next], [1, 1], dev)?;
                (logits, state) = self.run(&ids, Some(state))?;
            }
            Ok(out)
        })
    }
}

fn main() -> Result<()> {
    let args = lm::parse_args(
        "char_lstm",
        2e-3,
        &[
            ("--layers", "2", "stacked LSTM layers"),
            ("--hidden", "128", "hidden units per layer"),
            ("--embed", "64", "embedding size"),
            ("--dropout", "0", "dropout between LSTM layers"),
        ],
    );
    let dev = lm::device(&args)?;
    let corpus = lm::corpus(&args)?;
    let (layers, hidden, embed) = (
        args.usize("--layers"),
        args.usize("--hidden"),
        args.usize("--embed"),
    );
    let mut rng = Rng::new(args.seed);
    let config = LstmConfig {
        dropout: args.f32("--dropout"),
        seed: args.seed + 1,
        ..Default::default()
    };
    let v = corpus.vocab_size();
    let mut model = CharLstm {
        embedding: Tensor::randn([v, embed], args.seed + 2, &dev)?
            .mul_scalar(0.1)?
            .requires_grad(),
        lstm: Lstm::new(embed, hidden, layers, config, &mut rng, &dev)?,
        head: Linear::new(hidden, v, true, &mut rng, &dev)?,
    };
    if lm::Ranks::new(&args)?.is_main() {
        println!(
            "model: embedding {embed} -> {layers} x LSTM {hidden} -> Linear {v}; Adam {}, clip {}",
            args.lr, args.clip
        );
    }
    let mut opt = Adam::new(lm::CharLm::parameters(&model), args.lr);
    lm::run(&mut model, &mut opt, &corpus, &args, &dev)?;
    Ok(())
}
