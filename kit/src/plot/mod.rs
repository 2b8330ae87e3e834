//! Charts of training metrics (loss, DPO rewards, reward vs KL), each as SVG (the browser draws its text, so no font
//! file is needed) and as PNG (what GitHub shows reliably; its text is drawn with the font of [`font`]).
//!
//! Accuracies go on their own 0–1 axis ([`layout`]). A file path given for a chart gets the SVG, and the PNG is
//! written next to it with the extension `.png`.
use std::path::Path;

use plotters::prelude::*;

use crate::metrics::{series, Metrics};
use crate::Result;

mod draw;
pub mod font;
pub mod layout;
mod png;

/// One line of a chart: a name and its (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// The name of the right-hand 0–1 axis.
const FRACTION_AXIS: &str = "accuracy (0–1)";

/// The lines of `keys` in `history` against the step; keys absent from the run are left out.
pub fn metric_lines(history: &[Metrics], keys: &[&str]) -> Vec<Series> {
    keys.iter()
        .map(|k| (k.to_string(), series(history, k)))
        .filter(|(_, pts)| !pts.is_empty())
        .collect()
}

/// A line chart of `keys` against the step, written to `path` (SVG) and next to it (PNG); keys absent from the run
/// are left out. Nothing is written when none of them is present.
pub fn save_metrics_plot(history: &[Metrics], keys: &[&str], title: &str, path: &Path) -> Result<()> {
    let lines = metric_lines(history, keys);
    if lines.is_empty() {
        return Ok(());
    }
    line_chart(&lines, title, crate::metrics::keys::STEP, path)
}

/// A line chart (markers on each point): the SVG to `path` and the PNG to `path` with the extension `.png`.
pub fn line_chart(lines: &[Series], title: &str, x_label: &str, path: &Path) -> Result<()> {
    let svg = line_chart_svg(lines, title, x_label)?;
    let png = line_chart_png(lines, title, x_label)?;
    save_both(path, &svg, &png)
}

/// Write `svg` to `path` and `png` next to it (`path` with the extension `.png`), atomically each; the folder is
/// created when missing.
pub fn save_both(path: &Path, svg: &str, png: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::file(dir, e))?;
    }
    crate::io::write_atomic(path, svg.as_bytes())?;
    crate::io::write_atomic(path.with_extension("png"), png)
}

fn legend_names(lines: &[Series], axes: &layout::Axes) -> Vec<String> {
    lines
        .iter()
        .zip(&axes.on_fraction_axis)
        .map(|((n, _), &right)| if right { format!("{n} (right)") } else { n.clone() })
        .collect()
}

/// The SVG text of a line chart.
pub fn line_chart_svg(lines: &[Series], title: &str, x_label: &str) -> Result<String> {
    let axes = layout::axes(lines, title)?;
    let texts = draw::Texts {
        title: title.to_string(),
        x_label: x_label.to_string(),
        fraction_label: FRACTION_AXIS.to_string(),
        names: legend_names(lines, &axes),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, draw::SIZE).into_drawing_area();
        draw::draw(&root, lines, &axes, &texts)?;
    }
    Ok(svg)
}

/// The PNG bytes of a line chart, its text drawn with this process's chart font ([`font::chart_font`]).
pub fn line_chart_png(lines: &[Series], title: &str, x_label: &str) -> Result<Vec<u8>> {
    line_chart_png_with(lines, title, x_label, font::chart_font())
}

/// [`line_chart_png`] with a given font, or none. Text the font cannot draw is replaced by its Latin part (a title
/// with none left becomes the names of the lines), with one note per process.
pub fn line_chart_png_with(
    lines: &[Series],
    title: &str,
    x_label: &str,
    chart_font: Option<&font::ChartFont>,
) -> Result<Vec<u8>> {
    let axes = layout::axes(lines, title)?;
    let names = legend_names(lines, &axes);
    let mut missing = false;
    let mut fit = |text: &str| match chart_font {
        Some(f) if f.covers(text) => Some(text.to_string()),
        Some(f) => {
            missing = true;
            font::latin_fallback(text, |c| f.has_glyph(c))
        }
        None => {
            missing |= !text.is_empty();
            Some(text.to_string())
        }
    };
    let fallback_title = lines.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    let texts = draw::Texts {
        title: fit(title).unwrap_or(fallback_title),
        x_label: fit(x_label).unwrap_or_default(),
        fraction_label: fit(FRACTION_AXIS).unwrap_or_default(),
        names: names.iter().map(|n| fit(n).unwrap_or_default()).collect(),
    };
    if missing {
        font::note_missing_glyphs(chart_font);
    }
    let (w, h) = draw::SIZE;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let backend = png::GlyphBackend::new(&mut rgb, draw::SIZE, chart_font.map(|f| &f.font));
        draw::draw(&backend.into_drawing_area(), lines, &axes, &texts)?;
    }
    png::encode(&rgb, draw::SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<Series> {
        vec![
            ("loss".to_string(), vec![(1.0, 2.0), (2.0, 1.5), (3.0, 1.2)]),
            ("eval_loss".to_string(), vec![(3.0, 1.4)]),
            ("rewards/accuracies".to_string(), vec![(1.0, 0.5), (3.0, 0.75)]),
        ]
    }

    #[test]
    fn draws_an_svg_with_every_series_named_and_an_accuracy_axis() {
        let svg = line_chart_svg(&lines(), "training loss", "step").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("eval_loss") && svg.contains("training loss"));
        assert!(svg.contains("rewards/accuracies (right)") && svg.contains(FRACTION_AXIS));
        let no_acc = line_chart_svg(&lines()[..2], "loss", "step").unwrap();
        assert!(!no_acc.contains(FRACTION_AXIS));
        assert!(line_chart_svg(&[], "empty", "step").is_err());
    }

    /// Decode a PNG: (width, height, RGB(A) bytes).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = ::png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// Pixels that are not white in the rows `rows` (the title's band, for example).
    fn inked(rgb: &[u8], width: u32, rows: std::ops::Range<u32>) -> usize {
        rows.flat_map(|y| (0..width).map(move |x| ((y * width + x) * 3) as usize))
            .filter(|&i| rgb[i..i + 3] != [255, 255, 255])
            .count()
    }

    #[test]
    fn writes_a_png_next_to_the_svg_that_decodes() {
        let dir = std::env::temp_dir().join(format!("kit-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg_path = dir.join("loss.svg");
        line_chart(&lines(), "学習曲線", "step", &svg_path).unwrap();
        let png_bytes = std::fs::read(dir.join("loss.png")).unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        let (w, h, rgb) = decode(&png_bytes);
        assert_eq!((w, h), draw::SIZE);
        assert!(inked(&rgb, w, 60..h - 40) > 1000, "the lines are drawn");
        assert!(std::fs::read_to_string(&svg_path).unwrap().contains("学習曲線"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn png_without_a_font_is_still_written() {
        let png_bytes = line_chart_png_with(&lines(), "学習曲線", "ステップ", None).unwrap();
        let (w, h, rgb) = decode(&png_bytes);
        assert_eq!((w, h), draw::SIZE);
        assert_eq!(inked(&rgb, w, 0..30), 0, "no font: no title text");
        assert!(inked(&rgb, w, 60..h - 40) > 1000);
    }

    #[test]
    fn png_text_is_drawn_with_a_font() {
        // Any font file will do (the fetched Japanese one or a system Latin one); CI has DejaVu Sans.
        let Some(f) = font::candidates().iter().find_map(|p| font::ChartFont::load(p)) else {
            panic!("no font file found; set KIT_FONT or run `kit fetch font`");
        };
        let with = line_chart_png_with(&lines(), "training loss", "step", Some(&f)).unwrap();
        let (w, _, rgb) = decode(&with);
        assert!(inked(&rgb, w, 0..30) > 50, "the title is drawn");
    }
}
