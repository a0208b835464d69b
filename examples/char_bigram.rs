//! The simplest character-level language model: a bigram table (`logits = W[previous char]`),
//! trained with Adam on Shakespeare. It is the floor the LSTM and Transformer examples must
//! beat (about 2.5 nats/char), and the smallest user of the shared harness in `common/lm.rs`.
//!
//! `cargo run --release --example char_bigram -- [--minutes 1] [--device cpu|gpu]`

#[path = "common/lm.rs"]
mod lm;

use wgml::nn::init::Init;
use wgml::optim::Adam;
use wgml::rng::Rng;
use wgml::{Result, Tensor};

/// `logits[b, t] = table[x[b, t]]`.
struct Bigram {
    table: Tensor,
}

impl lm::CharLm for Bigram {
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.table.embedding(x)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("table".into(), self.table.clone())]
    }
    fn generate(
        &self,
        prompt: &[u32],
        n: usize,
        pick: &mut dyn FnMut(&[f32]) -> u32,
    ) -> Result<Vec<u32>> {
        let mut last = *prompt.last().unwrap_or(&0);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let row = self.table.narrow(0, last as usize, 1)?.to_vec()?;
            last = pick(&row);
            out.push(last);
        }
        Ok(out)
    }
}

fn main() -> Result<()> {
    let args = lm::parse_args("char_bigram", 1e-2, &[]);
    let dev = lm::device(&args)?;
    let corpus = lm::corpus(&args)?;
    let v = corpus.vocab_size();
    let table = Init::Zeros.tensor([v, v], &mut Rng::new(args.seed), &dev)?;
    let mut model = Bigram {
        table: table.requires_grad(),
    };
    let mut opt = Adam::new(lm::CharLm::parameters(&model), args.lr);
    lm::run(&mut model, &mut opt, &corpus, &args, &dev)?;
    Ok(())
}
