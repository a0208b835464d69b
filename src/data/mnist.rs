//! MNIST from the standard gzip-compressed IDX files (big-endian header: magic 2051 for
//! images / 2049 for labels, then the count, then rows and cols for images).

use crate::{Device, Error, Result, Tensor};
use std::io::Read;
use std::path::Path;

/// One split of MNIST: images as `f32` in [0, 1], row-major `[n, 28·28]`, and labels 0–9.
pub struct Split {
    /// Pixel values scaled to [0, 1].
    pub images: Vec<f32>,
    /// Class labels.
    pub labels: Vec<u8>,
    /// Image height and width.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The examples at `idx` as an image tensor `[B, rows·cols]` and a `U32` label tensor `[B]`.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let px = self.rows * self.cols;
        let mut x = Vec::with_capacity(idx.len() * px);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            let end = i.checked_add(1).and_then(|j| j.checked_mul(px));
            let image = end.and_then(|b| self.images.get(b - px..b));
            let (Some(image), Some(&label)) = (image, self.labels.get(i)) else {
                return Err(Error::IndexOutOfRange {
                    op: "Split::batch",
                    index: i,
                    size: self.len(),
                    shape: vec![self.len(), px],
                });
            };
            x.extend_from_slice(image);
            y.push(label as u32);
        }
        Ok((
            Tensor::from_vec(x, [idx.len(), px], device)?,
            Tensor::from_indices(&y, [idx.len()], device)?,
        ))
    }
}

/// The training and test splits.
pub struct Mnist {
    /// 60,000 training examples.
    pub train: Split,
    /// 10,000 test examples.
    pub test: Split,
}

/// Loads `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-…` from `dir`.
pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
    let dir = dir.as_ref();
    let split = |prefix: &str| -> Result<Split> {
        let (images, rows, cols) =
            read_images(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")))?;
        let labels = read_labels(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")))?;
        if labels.len() * rows * cols != images.len() {
            return Err(Error::Format {
                what: dir.join(prefix).display().to_string(),
                msg: format!(
                    "{} labels but {} images",
                    labels.len(),
                    images.len() / (rows * cols).max(1)
                ),
            });
        }
        Ok(Split {
            images: images.iter().map(|&p| p as f32 / 255.0).collect(),
            labels,
            rows,
            cols,
        })
    };
    Ok(Mnist {
        train: split("train")?,
        test: split("t10k")?,
    })
}

fn gunzip(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        what: format!("opening {}", path.display()),
        source,
    })?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut out)
        .map_err(|e| Error::Format {
            what: path.display().to_string(),
            msg: format!("not a valid gzip stream: {e}"),
        })?;
    Ok(out)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses an IDX image file: `(pixels, rows, cols)`.
pub fn parse_images(bytes: &[u8], what: &str) -> Result<(Vec<u8>, usize, usize)> {
    let bad = |msg: String| Error::Format {
        what: what.to_string(),
        msg,
    };
    if bytes.len() < 16 {
        return Err(bad(format!(
            "{} bytes is too short for an IDX3 header",
            bytes.len()
        )));
    }
    if be_u32(bytes, 0) != 2051 {
        return Err(bad(format!(
            "magic {} is not 2051 (IDX3 images)",
            be_u32(bytes, 0)
        )));
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    let need = n.checked_mul(rows).and_then(|v| v.checked_mul(cols));
    if need != Some(bytes.len() - 16) {
        return Err(bad(format!(
            "header says {n} images of {rows}x{cols} but {} pixel bytes follow",
            bytes.len() - 16
        )));
    }
    Ok((bytes[16..].to_vec(), rows, cols))
}

/// Parses an IDX label file.
pub fn parse_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let bad = |msg: String| Error::Format {
        what: what.to_string(),
        msg,
    };
    if bytes.len() < 8 {
        return Err(bad(format!(
            "{} bytes is too short for an IDX1 header",
            bytes.len()
        )));
    }
    if be_u32(bytes, 0) != 2049 {
        return Err(bad(format!(
            "magic {} is not 2049 (IDX1 labels)",
            be_u32(bytes, 0)
        )));
    }
    let n = be_u32(bytes, 4) as usize;
    if n != bytes.len() - 8 {
        return Err(bad(format!(
            "header says {n} labels but {} bytes follow",
            bytes.len() - 8
        )));
    }
    Ok(bytes[8..].to_vec())
}

fn read_images(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    parse_images(&gunzip(path)?, &path.display().to_string())
}

fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(&gunzip(path)?, &path.display().to_string())
}
