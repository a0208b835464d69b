//! A character-level text corpus: gzip or plain text, a sorted character vocabulary, the
//! 90/10 train/validation split, random training windows and the validation windows.

use crate::rng::Rng;
use crate::{Device, Error, Result, Tensor};
use std::io::Read;
use std::path::Path;

/// A text corpus as token ids over a character vocabulary (sorted distinct characters, as the
/// JAX yardstick `shared/anchors/jax_charlm.py` builds it, so ids agree with it).
pub struct CharCorpus {
    /// The vocabulary: id `i` is `chars[i]`.
    pub chars: Vec<char>,
    /// Every character of the text as an id.
    pub ids: Vec<u32>,
    /// Ids `[0, split)` train, `[split, len)` validate.
    pub split: usize,
}

impl CharCorpus {
    /// Reads `path` (gzip-compressed if it ends in `.gz`), builds the vocabulary and splits the
    /// first `train_fraction` of the characters off for training.
    pub fn load(path: impl AsRef<Path>, train_fraction: f64) -> Result<CharCorpus> {
        let path = path.as_ref();
        let what = || format!("reading the text corpus {}", path.display());
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            what: what(),
            source,
        })?;
        let text = if path.extension().is_some_and(|e| e == "gz") {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut s)
                .map_err(|source| Error::Io {
                    what: what(),
                    source,
                })?;
            s
        } else {
            String::from_utf8(bytes).map_err(|e| Error::Format {
                what: path.display().to_string(),
                msg: format!("not UTF-8 text: {e}"),
            })?
        };
        Self::from_text(&text, train_fraction)
    }

    /// Builds the corpus from a string (see [`CharCorpus::load`]).
    pub fn from_text(text: &str, train_fraction: f64) -> Result<CharCorpus> {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        if chars.is_empty() {
            return Err(Error::invalid("CharCorpus", "the text is empty"));
        }
        let ids: Vec<u32> = text
            .chars()
            .map(|c| {
                chars
                    .binary_search(&c)
                    .expect("every char is in the vocabulary") as u32
            })
            .collect();
        let split = ((ids.len() as f64) * train_fraction.clamp(0.0, 1.0)) as usize;
        Ok(CharCorpus { chars, ids, split })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    /// The training ids.
    pub fn train(&self) -> &[u32] {
        &self.ids[..self.split]
    }

    /// The validation ids.
    pub fn valid(&self) -> &[u32] {
        &self.ids[self.split..]
    }

    /// Text to ids; `Err` names the first character outside the vocabulary.
    pub fn encode(&self, s: &str) -> Result<Vec<u32>> {
        s.chars()
            .map(|c| {
                self.chars.binary_search(&c).map(|i| i as u32).map_err(|_| {
                    Error::invalid(
                        "CharCorpus::encode",
                        format!("{c:?} is not in the vocabulary"),
                    )
                })
            })
            .collect()
    }

    /// Ids to text (ids outside the vocabulary become `?`).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.chars.get(i as usize).copied().unwrap_or('?'))
            .collect()
    }

    /// `batch` random training windows of `context` characters: inputs `[batch, context]` and
    /// the next-character targets `[batch, context]`, both `U32`, flattened row-major.
    pub fn random_windows(
        &self,
        batch: usize,
        context: usize,
        rng: &mut Rng,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let train = self.train();
        if train.len() < context + 2 {
            return Err(Error::invalid(
                "CharCorpus::random_windows",
                format!(
                    "{} training characters cannot fill a window of {context}",
                    train.len()
                ),
            ));
        }
        let mut x = Vec::with_capacity(batch * context);
        let mut y = Vec::with_capacity(batch * context);
        for _ in 0..batch {
            let s = rng.below(train.len() - context - 1);
            x.extend_from_slice(&train[s..s + context]);
            y.extend_from_slice(&train[s + 1..s + context + 1]);
        }
        Ok((x, y))
    }

    /// The validation split as non-overlapping windows of `context`: `(inputs, targets)` with
    /// `n · context` ids each, `n = (len - 1) / context` (the yardstick's evaluation).
    pub fn valid_windows(&self, context: usize) -> (Vec<u32>, Vec<u32>) {
        let v = self.valid();
        let n = v.len().saturating_sub(1) / context.max(1);
        (v[..n * context].to_vec(), v[1..n * context + 1].to_vec())
    }
}

/// Index tensors `[batch, context]` for one `(inputs, targets)` pair of id vectors.
pub fn window_tensors(
    x: &[u32],
    y: &[u32],
    batch: usize,
    context: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::from_indices(x, [batch, context], device)?,
        Tensor::from_indices(y, [batch, context], device)?,
    ))
}
