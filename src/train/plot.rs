//! SVG plots of a [`History`] with plotters: one chart per logged quantity (loss, each metric,
//! the learning rate) against the epoch, the training and `val_` series together.

use super::history::History;
use crate::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

/// The training series' colour (and the first of every chart).
pub const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
/// The validation series' colour.
pub const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);
/// Size of one chart in pixels.
const CELL: (u32, u32) = (560, 360);

/// The charts to draw: each base name with the names of its series (`name`, `val_name`).
fn groups(h: &History) -> Vec<(String, Vec<String>)> {
    let names = h.names();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for n in &names {
        let base = n.strip_prefix("val_").unwrap_or(n);
        match out.iter_mut().find(|(b, _)| b == base) {
            Some((_, series)) => series.push(n.to_string()),
            None => out.push((base.to_string(), vec![n.to_string()])),
        }
    }
    // Training before validation within a chart.
    for (_, s) in &mut out {
        s.sort_by_key(|n| n.starts_with("val_"));
    }
    out
}

/// `learning_rate` → `Learning rate`.
fn title(base: &str) -> String {
    let s = base.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }
}

/// The value range of the finite values, padded so the curve does not touch the frame.
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        (hi.abs() * 0.1).max(1e-3)
    };
    (lo - pad, hi + pad)
}

fn tick_label(v: f64, span: f64) -> String {
    // Rounding noise at zero (-1.4e-20) reads as 0.
    if v.abs() < span * 1e-9 {
        return "0".into();
    }
    if span < 1e-2 || v.abs() >= 1e4 {
        format!("{v:.2e}")
    } else if span < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

impl History {
    /// The curves as an SVG document: one chart per logged quantity against the epoch, with a
    /// title, labelled axes and a legend; training in blue, validation in orange, a marker at
    /// every epoch. `Err` if the history has no epoch.
    pub fn to_svg(&self) -> Result<String> {
        let plot_err = |e: &dyn std::fmt::Display| Error::invalid("History::to_svg", e.to_string());
        if self.is_empty() {
            return Err(Error::invalid(
                "History::to_svg",
                "the history has no epoch to plot",
            ));
        }
        let groups = groups(self);
        let cols = if groups.len() > 1 { 2 } else { 1 };
        let rows = groups.len().div_ceil(cols);
        let size = (CELL.0 * cols as u32, CELL.1 * rows as u32);
        let epochs: Vec<f64> = self.epochs().iter().map(|&e| e as f64).collect();
        let (x0, x1) = (epochs[0] - 0.25, epochs[epochs.len() - 1] + 0.25);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_err(&e))?;
            let cells = root.split_evenly((rows, cols));
            for ((base, series), cell) in groups.iter().zip(&cells) {
                let all = series
                    .iter()
                    .flat_map(|s| self.get(s).unwrap_or(&[]).iter().copied());
                let (y0, y1) = y_range(all);
                let mut chart = ChartBuilder::on(cell)
                    .caption(format!("{} per epoch", title(base)), ("sans-serif", 20))
                    .margin(14)
                    .x_label_area_size(42)
                    .y_label_area_size(70)
                    .build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(|e| plot_err(&e))?;
                let span = y1 - y0;
                let whole = |x: &f64| {
                    if (x - x.round()).abs() < 1e-6 {
                        format!("{}", x.round())
                    } else {
                        String::new()
                    }
                };
                chart
                    .configure_mesh()
                    .x_desc("epoch")
                    .y_desc(base.as_str())
                    .x_labels(epochs.len().clamp(2, 12))
                    .x_label_formatter(&whole)
                    .y_label_formatter(&|v| tick_label(*v, span))
                    .light_line_style(WHITE)
                    .draw()
                    .map_err(|e| plot_err(&e))?;
                for name in series {
                    let color = if name.starts_with("val_") {
                        VAL_COLOR
                    } else {
                        TRAIN_COLOR
                    };
                    let points: Vec<(f64, f64)> = epochs
                        .iter()
                        .zip(self.get(name).unwrap_or(&[]))
                        .filter(|(_, v)| v.is_finite())
                        .map(|(&e, &v)| (e, v))
                        .collect();
                    chart
                        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                        .map_err(|e| plot_err(&e))?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled())
                        });
                    chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| plot_err(&e))?;
                }
                // The legend goes in the corner the curves leave free: the lower right when the
                // first series rises (accuracies), else the upper right (losses).
                let first = self.get(&series[0]).unwrap_or(&[]);
                let finite: Vec<f64> = first.iter().copied().filter(|v| v.is_finite()).collect();
                let rises = finite.len() > 1 && finite[finite.len() - 1] > finite[0];
                chart
                    .configure_series_labels()
                    .position(if rises {
                        SeriesLabelPosition::LowerRight
                    } else {
                        SeriesLabelPosition::UpperRight
                    })
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| plot_err(&e))?;
            }
            root.present().map_err(|e| plot_err(&e))?;
        }
        Ok(svg)
    }

    /// Writes [`History::to_svg`] to `path` atomically.
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::fs::write_atomic(path, self.to_svg()?.as_bytes())
    }
}
