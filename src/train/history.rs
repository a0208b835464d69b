//! `Logs` (one epoch's named values) and `History` (every epoch's, plus the loss of every
//! step), written to and read from JSON and CSV.

use crate::{Error, Result};
use std::path::Path;

/// Named values in a fixed order: `loss`, the metrics, then `val_` ones and `learning_rate`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logs {
    entries: Vec<(String, f64)>,
}

impl Logs {
    /// No values.
    pub fn new() -> Logs {
        Logs::default()
    }
    /// Sets `name` (replacing a previous value, else appending).
    pub fn insert(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = value,
            None => self.entries.push((name, value)),
        }
    }
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries.iter().find(|(n, _)| n == name).map(|e| e.1)
    }
    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), *v))
    }
    /// The names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }
    /// Number of values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What `fit` returns (Keras's `History`): for each epoch, the value of every logged name
/// (train and `val_` metrics, the learning rate), and the training loss of every step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    epochs: Vec<usize>,
    series: Vec<(String, Vec<f64>)>,
    step_loss: Vec<f32>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records epoch `epoch` (1-based); a name first seen now reads `NaN` for earlier epochs,
    /// and a name missing now reads `NaN` for this one.
    pub fn push_epoch(&mut self, epoch: usize, logs: &Logs) {
        let before = self.epochs.len();
        self.epochs.push(epoch);
        for (name, value) in logs.iter() {
            match self.series.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => v.push(value),
                None => {
                    let mut v = vec![f64::NAN; before];
                    v.push(value);
                    self.series.push((name.to_string(), v));
                }
            }
        }
        for (_, v) in &mut self.series {
            v.resize(before + 1, f64::NAN);
        }
    }

    /// Appends the training losses of some steps.
    pub fn push_step_losses(&mut self, losses: &[f32]) {
        self.step_loss.extend_from_slice(losses);
    }

    /// The epoch numbers recorded (1-based; a resumed run starts after its initial epoch).
    pub fn epochs(&self) -> &[usize] {
        &self.epochs
    }
    /// Every recorded name, in first-seen order.
    pub fn names(&self) -> Vec<&str> {
        self.series.iter().map(|(n, _)| n.as_str()).collect()
    }
    /// The per-epoch values of `name`.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.series
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
    /// The last epoch's value of `name`.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(|v| v.last().copied())
    }
    /// The training loss of every step, in order.
    pub fn step_loss(&self) -> &[f32] {
        &self.step_loss
    }
    /// Number of epochs recorded.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }
    /// Whether no epoch is recorded.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// As JSON: `{"epochs": [..], "metrics": [{"name": .., "values": [..]}, ..], "step_loss":
    /// [..]}` (a value that is not finite is `null`).
    pub fn to_json(&self) -> String {
        use serde_json::{json, Value};
        let num = |v: f64| {
            serde_json::Number::from_f64(v)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        };
        let metrics: Vec<Value> = self
            .series
            .iter()
            .map(|(n, v)| json!({"name": n, "values": v.iter().map(|&x| num(x)).collect::<Vec<_>>()}))
            .collect();
        let doc = json!({
            "epochs": self.epochs,
            "metrics": metrics,
            "step_loss": self.step_loss.iter().map(|&x| num(x as f64)).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&doc).expect("a JSON value always serialises")
    }

    /// Reads [`History::to_json`]'s format (`null` reads as `NaN`); `what` names the source in
    /// errors.
    pub fn from_json(text: &str, what: &str) -> Result<History> {
        use serde_json::Value;
        let bad = |msg: String| Error::Format {
            what: what.to_string(),
            msg,
        };
        let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let float = |v: &Value| -> Result<f64> {
            match v {
                Value::Null => Ok(f64::NAN),
                Value::Number(n) => n
                    .as_f64()
                    .ok_or_else(|| bad(format!("{n} is not a number"))),
                other => Err(bad(format!("{other} is not a number"))),
            }
        };
        let array = |v: Option<&Value>, key: &str| -> Result<Vec<Value>> {
            match v {
                Some(Value::Array(a)) => Ok(a.clone()),
                _ => Err(bad(format!("\"{key}\" is missing or not an array"))),
            }
        };
        let epochs = array(doc.get("epochs"), "epochs")?
            .iter()
            .map(|e| {
                e.as_u64()
                    .map(|e| e as usize)
                    .ok_or_else(|| bad(format!("epoch {e} is not a whole number")))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut series = Vec::new();
        for m in array(doc.get("metrics"), "metrics")? {
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a metric without a \"name\"".into()))?
                .to_string();
            let values = array(m.get("values"), "values")?
                .iter()
                .map(float)
                .collect::<Result<Vec<_>>>()?;
            if values.len() != epochs.len() {
                return Err(bad(format!(
                    "metric {name} has {} values for {} epochs",
                    values.len(),
                    epochs.len()
                )));
            }
            series.push((name, values));
        }
        let step_loss = match doc.get("step_loss") {
            None => Vec::new(),
            v => array(v, "step_loss")?
                .iter()
                .map(|x| float(x).map(|f| f as f32))
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(History {
            epochs,
            series,
            step_loss,
        })
    }

    /// As CSV (Keras's `CSVLogger`): a header `epoch,name,...` and a row per epoch. Values are
    /// written in the shortest form that reads back exactly; the step losses are not included.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("epoch");
        for (n, _) in &self.series {
            out.push(',');
            out.push_str(n);
        }
        out.push('\n');
        for (i, e) in self.epochs.iter().enumerate() {
            out.push_str(&e.to_string());
            for (_, v) in &self.series {
                out.push(',');
                out.push_str(&v[i].to_string());
            }
            out.push('\n');
        }
        out
    }

    /// Reads [`History::to_csv`]'s format; `what` names the source in errors.
    pub fn from_csv(text: &str, what: &str) -> Result<History> {
        let bad = |line: usize, msg: String| Error::Format {
            what: what.to_string(),
            msg: format!("line {line}: {msg}"),
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| bad(1, "no header".into()))?;
        let mut cols = header.split(',');
        if cols.next().map(str::trim) != Some("epoch") {
            return Err(bad(
                1,
                format!("the header {header:?} does not start with epoch"),
            ));
        }
        let mut h = History {
            series: cols.map(|n| (n.trim().to_string(), Vec::new())).collect(),
            ..History::default()
        };
        for (i, line) in lines {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != h.series.len() + 1 {
                return Err(bad(
                    i + 1,
                    format!("{} cells for {} columns", cells.len(), h.series.len() + 1),
                ));
            }
            let epoch = cells[0]
                .parse()
                .map_err(|e| bad(i + 1, format!("epoch {:?}: {e}", cells[0])))?;
            h.epochs.push(epoch);
            for ((name, v), cell) in h.series.iter_mut().zip(&cells[1..]) {
                v.push(
                    cell.parse()
                        .map_err(|e| bad(i + 1, format!("{name} {cell:?}: {e}")))?,
                );
            }
        }
        Ok(h)
    }

    /// Writes the history to `path` atomically: CSV if it ends in `.csv`, else JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = if is_csv(path) {
            self.to_csv()
        } else {
            self.to_json()
        };
        crate::fs::write_atomic(path, text.as_bytes())
    }

    /// Reads a history written by [`History::save`] (CSV if `path` ends in `.csv`, else JSON).
    pub fn load(path: impl AsRef<Path>) -> Result<History> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: format!("reading {}", path.display()),
            source,
        })?;
        let what = path.display().to_string();
        if is_csv(path) {
            History::from_csv(&text, &what)
        } else {
            History::from_json(&text, &what)
        }
    }
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}
