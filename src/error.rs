//! The one error type: every variant names the op and carries the shapes involved.

use std::fmt;

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything a user can get wrong, and everything a device can refuse.
#[derive(Debug)]
pub enum Error {
    /// Two shapes that must agree (or broadcast) do not.
    ShapeMismatch {
        /// The op that was called.
        op: &'static str,
        /// Shape of the left (or first) operand.
        lhs: Vec<usize>,
        /// Shape of the right (or second) operand.
        rhs: Vec<usize>,
    },
    /// Operands live on different devices.
    DeviceMismatch {
        /// The op that was called.
        op: &'static str,
        /// Device of the left operand.
        lhs: String,
        /// Device of the right operand.
        rhs: String,
    },
    /// The op does not support this dtype (or two dtypes disagree).
    DType {
        /// The op that was called.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// A dimension index is not below the rank.
    DimOutOfRange {
        /// The op that was called.
        op: &'static str,
        /// The dimension asked for.
        dim: isize,
        /// The shape of the tensor.
        shape: Vec<usize>,
    },
    /// An index into a tensor is out of range.
    IndexOutOfRange {
        /// The op that was called.
        op: &'static str,
        /// The offending index.
        index: usize,
        /// The size of the indexed dimension.
        size: usize,
        /// The shape of the indexed tensor.
        shape: Vec<usize>,
    },
    /// Data length and shape disagree.
    ElementCount {
        /// The op that was called.
        op: &'static str,
        /// The requested shape.
        shape: Vec<usize>,
        /// How many elements were given.
        len: usize,
    },
    /// The op needs at least one element.
    Empty {
        /// The op that was called.
        op: &'static str,
        /// The empty tensor's shape.
        shape: Vec<usize>,
    },
    /// The tensor would exceed a limit of the device.
    TooLarge {
        /// The op that was called.
        op: &'static str,
        /// The shape that was asked for.
        shape: Vec<usize>,
        /// Bytes needed.
        bytes: u64,
        /// The device's limit in bytes.
        limit: u64,
    },
    /// Any other invalid argument, described in full.
    Invalid {
        /// The op that was called.
        op: &'static str,
        /// What was wrong, with the shapes.
        msg: String,
    },
    /// No GPU adapter could be found or opened.
    NoAdapter(String),
    /// The GPU reported an error (a bug in wgml if it follows a validated call).
    Gpu(String),
    /// An I/O error, with what was being done.
    Io {
        /// What was being read or written.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is corrupt or not in the expected format.
    Format {
        /// The file or stream.
        what: String,
        /// What was wrong.
        msg: String,
    },
    /// The host could not allocate memory for a tensor (PyTorch's out-of-memory error).
    OutOfMemory {
        /// The op that was called.
        op: &'static str,
        /// Bytes asked for.
        bytes: u64,
    },
    /// A shape's element count (or its size in bytes) overflows the address space.
    Overflow {
        /// The op that was called.
        op: &'static str,
        /// The shape that was asked for.
        shape: Vec<usize>,
    },
    /// Anomaly mode found a NaN or an infinity (see `wgml::set_detect_anomaly`).
    NonFinite {
        /// `forward` or `backward`.
        phase: &'static str,
        /// The op and the shapes it read.
        op: String,
        /// Which tensor, and how many values are not finite.
        detail: String,
    },
    /// The call would have to wait for the GPU, and this target cannot block (wasm32 in a
    /// browser): the message names the asynchronous call to use instead.
    WouldBlock {
        /// The blocking call that was made.
        op: &'static str,
        /// What to call instead.
        instead: &'static str,
    },
    /// The GPU device was lost, or raised an error earlier: no op can run on it any more.
    DeviceLost {
        /// The op that was called.
        op: &'static str,
        /// What happened to the device first.
        reason: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ShapeMismatch { op, lhs, rhs } => {
                write!(f, "{op}: shape mismatch between {lhs:?} and {rhs:?}")
            }
            Error::DeviceMismatch { op, lhs, rhs } => {
                write!(f, "{op}: operands on different devices ({lhs} vs {rhs})")
            }
            Error::DType { op, msg } => write!(f, "{op}: {msg}"),
            Error::DimOutOfRange { op, dim, shape } => write!(
                f,
                "{op}: dimension {dim} out of range for a tensor of shape {shape:?} (rank {})",
                shape.len()
            ),
            Error::IndexOutOfRange {
                op,
                index,
                size,
                shape,
            } => write!(
                f,
                "{op}: index {index} out of range for size {size} (tensor of shape {shape:?})"
            ),
            Error::ElementCount { op, shape, len } => write!(
                f,
                "{op}: shape {shape:?} needs {} elements but {len} were given",
                crate::Shape::from(shape.as_slice()).numel()
            ),
            Error::Empty { op, shape } => {
                write!(f, "{op}: tensor of shape {shape:?} has no elements")
            }
            Error::TooLarge {
                op,
                shape,
                bytes,
                limit,
            } => write!(
                f,
                "{op}: a tensor of shape {shape:?} needs {bytes} bytes, beyond the device's limit of {limit} bytes"
            ),
            Error::Invalid { op, msg } => write!(f, "{op}: {msg}"),
            Error::NoAdapter(msg) => write!(f, "no GPU adapter: {msg}"),
            Error::Gpu(msg) => write!(f, "GPU error: {msg}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Format { what, msg } => write!(f, "{what}: {msg}"),
            Error::OutOfMemory { op, bytes } => {
                write!(f, "{op}: out of memory allocating {bytes} bytes on the host")
            }
            Error::NonFinite { phase, op, detail } => write!(
                f,
                "anomaly: the {phase} of {op} produced non-finite values: {detail}"
            ),
            Error::DeviceLost { op, reason } => write!(
                f,
                "{op}: the GPU device is unusable ({reason}); open a new device or restart"
            ),
            Error::WouldBlock { op, instead } => write!(
                f,
                "{op}: waiting for the GPU would block, and this target (a browser) cannot block; use {instead}"
            ),
            Error::Overflow { op, shape } => write!(
                f,
                "{op}: the element count of shape {shape:?} overflows the address space"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
