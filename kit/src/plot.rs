//! Charts of training metrics (loss, DPO rewards, reward vs KL) as SVG: no font files needed, crisp on GitHub, in a
//! browser and in Jupyter.
use std::path::Path;

use plotters::prelude::*;

use crate::metrics::{series, Metrics};
use crate::{Error, Result};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One line of a chart: a name and its (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// A line chart of `keys` against the step; keys absent from the run are left out. Nothing is written when none of
/// them is present.
pub fn save_metrics_plot(history: &[Metrics], keys: &[&str], title: &str, path: &Path) -> Result<()> {
    let lines: Vec<Series> = keys
        .iter()
        .map(|k| (k.to_string(), series(history, k)))
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    line_chart(&lines, title, "step", path)
}

/// A line chart (markers on each point) written as SVG to `path`.
pub fn line_chart(lines: &[Series], title: &str, x_label: &str, path: &Path) -> Result<()> {
    let svg = line_chart_svg(lines, title, x_label)?;
    crate::io::write_atomic(path, svg.as_bytes())
}

/// The SVG text of a line chart (what notebooks display inline).
pub fn line_chart_svg(lines: &[Series], title: &str, x_label: &str) -> Result<String> {
    let pts = lines.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(Error::Input(format!("chart `{title}`: nothing to draw")));
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.08).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 400)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| Error::msg(format!("plot `{title}`: {e}"));
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (name, p)) in lines.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(p.iter().copied(), c.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
            chart
                .draw_series(p.iter().map(|&(x, y)| Circle::new((x, y), 2, c.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_every_series_named() {
        let lines = vec![
            ("loss".to_string(), vec![(1.0, 2.0), (2.0, 1.5), (3.0, 1.2)]),
            ("eval_loss".to_string(), vec![(3.0, 1.4)]),
        ];
        let svg = line_chart_svg(&lines, "training loss", "step").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("eval_loss") && svg.contains("training loss"));
        assert!(line_chart_svg(&[], "empty", "step").is_err());
    }
}
