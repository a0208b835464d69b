//! `History`: JSON and CSV round trips (files written atomically), and the SVG plot: valid XML
//! with one curve per series and one point per epoch, titles and axis labels, rendered by a
//! headless Chromium where one is installed.

use wgml::train::{History, Logs};

/// Four epochs of loss/accuracy with validation and a learning rate; `val_top_5` appears late.
fn sample() -> History {
    let mut h = History::new();
    for e in 0..4 {
        let mut logs = Logs::new();
        let x = e as f64;
        logs.insert("loss", 1.0 / (x + 1.0) + 0.1);
        logs.insert("accuracy", 0.5 + 0.1 * x + 1e-17);
        logs.insert("val_loss", 1.2 / (x + 1.0) + 0.15);
        logs.insert("val_accuracy", 0.45 + 0.09 * x);
        if e >= 2 {
            logs.insert("val_top_5", 0.9 + 0.01 * x);
        }
        logs.insert("learning_rate", 1e-3 * 0.5f64.powi(e));
        h.push_epoch(e as usize + 1, &logs);
        h.push_step_losses(&[0.9 / (x as f32 + 1.0), 0.7 / (x as f32 + 1.0), 1.0 / 3.0]);
    }
    h
}

fn same(a: &History, b: &History) {
    assert_eq!(a.epochs(), b.epochs());
    assert_eq!(a.names(), b.names());
    for n in a.names() {
        let (x, y) = (a.get(n).unwrap(), b.get(n).unwrap());
        for (p, q) in x.iter().zip(y) {
            assert!(
                p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()),
                "{n}: {x:?} vs {y:?}"
            );
        }
    }
}

#[test]
fn missing_values_read_nan() {
    let h = sample();
    let top5 = h.get("val_top_5").unwrap();
    assert!(top5[0].is_nan() && top5[1].is_nan());
    assert_eq!(top5[2], 0.92);
    assert_eq!(h.len(), 4);
    assert_eq!(h.step_loss().len(), 12);
}

#[test]
fn json_round_trips_exactly() {
    let h = sample();
    let back = History::from_json(&h.to_json(), "sample").unwrap();
    same(&h, &back);
    assert_eq!(back.step_loss(), h.step_loss());
    // A broken document names what is wrong.
    let e = History::from_json(
        "{\"epochs\": [1], \"metrics\": [{\"name\": \"loss\", \"values\": [1, 2]}]}",
        "x.json",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("x.json") && e.contains("2 values for 1 epochs"),
        "{e}"
    );
    assert!(History::from_json("not json", "y").is_err());
}

#[test]
fn csv_round_trips_exactly() {
    let h = sample();
    let csv = h.to_csv();
    assert!(csv.starts_with("epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,val_top_5\n"));
    let back = History::from_csv(&csv, "sample").unwrap();
    same(&h, &back);
    let e = History::from_csv("epoch,loss\n1,0.5,7\n", "z.csv")
        .unwrap_err()
        .to_string();
    assert!(e.contains("z.csv") && e.contains("line 2"), "{e}");
}

#[test]
fn files_round_trip_and_leave_no_temporaries() {
    let dir = std::env::temp_dir().join(format!("wgml_history_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let h = sample();
    for name in ["h.json", "h.csv"] {
        let p = dir.join(name);
        h.save(&p).unwrap();
        h.save(&p).unwrap(); // overwrites
        same(&h, &History::load(&p).unwrap());
    }
    assert_eq!(
        History::load(dir.join("h.json")).unwrap().step_loss(),
        h.step_loss()
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["h.csv", "h.json"]);
    let e = History::load(dir.join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.json"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The colours of `train::plot`: training blue, validation orange.
const TRAIN: &str = "#1F77B4";
const VAL: &str = "#FF7F0E";

#[test]
fn svg_parses_with_one_curve_per_series_and_one_point_per_epoch() {
    let h = sample();
    let svg = h.to_svg().unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the plot is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    // Curves are the thick polylines (axes and ticks are 1 px wide), one per series.
    let curves: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
        .collect();
    assert_eq!(curves.len(), h.names().len(), "one curve per series");
    let points = |n: &roxmltree::Node| n.attribute("points").unwrap().split_whitespace().count();
    let strokes: Vec<&str> = curves
        .iter()
        .map(|c| c.attribute("stroke").unwrap())
        .collect();
    assert_eq!(strokes.iter().filter(|&&s| s == TRAIN).count(), 3); // loss, accuracy, lr
    assert_eq!(strokes.iter().filter(|&&s| s == VAL).count(), 3);
    // Every series has a point per epoch, except val_top_5 (NaN for two epochs).
    let mut counts: Vec<usize> = curves.iter().map(points).collect();
    counts.sort();
    assert_eq!(counts, [2, 4, 4, 4, 4, 4]);
    let markers = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .count();
    assert_eq!(markers, 5 * 4 + 2);
    // Titles, axis labels and legend entries are text.
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    for want in [
        "Loss per epoch",
        "Accuracy per epoch",
        "Learning rate per epoch",
        "Top 5 per epoch",
        "epoch",
        "loss",
        "val_loss",
        "val_accuracy",
        "learning_rate",
    ] {
        assert!(
            texts.iter().any(|t| t == want),
            "no text {want:?} in {texts:?}"
        );
    }
    assert!(History::new().to_svg().is_err());
}

/// Renders a plot with Debian's headless Chromium (as CI has it) and checks the screenshot is
/// a PNG of the window's size with more than a blank page in it. Skipped, with a line, where
/// no `chromium` is installed. `WGML_PLOT_PNG=path` keeps the screenshot to look at.
#[test]
fn svg_renders_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("skipping the headless render: no chromium installed");
        return;
    };
    let dir = std::env::temp_dir().join(format!("wgml_render_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("history.svg");
    sample().plot(&svg).unwrap();
    let png = match std::env::var("WGML_PLOT_PNG") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => dir.join("history.png"),
    };
    let out = std::process::Command::new("timeout")
        .args([
            "120",
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1120,720")
        .arg(format!("file://{}", svg.display()))
        .output()
        .unwrap();
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}); chromium said: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (1120, 720), "screenshot size");
    // A blank white page of this size compresses to a few kB; curves, text and grids do not.
    assert!(
        bytes.len() > 20_000,
        "the screenshot looks blank ({} bytes)",
        bytes.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
