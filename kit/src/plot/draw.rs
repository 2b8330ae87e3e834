//! One line chart drawn on any plotters backend (SVG text, or the PNG bitmap of [`super::png`]).
use plotters::coord::Shift;
use plotters::prelude::*;

use super::layout::Axes;
use super::Series;
use crate::{Error, Result};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Pixel size of every chart.
pub const SIZE: (u32, u32) = (720, 400);

/// The texts of a chart as a backend will draw them (a PNG may have replaced some by their Latin part).
pub struct Texts {
    pub title: String,
    pub x_label: String,
    /// The right axis' name, when there is one.
    pub fraction_label: String,
    /// One legend entry per line.
    pub names: Vec<String>,
}

/// Draw `lines` laid out by `axes` on `root`.
pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, lines: &[Series], axes: &Axes, t: &Texts) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::msg(format!("plot `{}`: {e}", t.title));
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut builder = ChartBuilder::on(root);
    if !t.title.is_empty() {
        builder.caption(&t.title, ("sans-serif", 20));
    }
    let right = if axes.y_fraction.is_some() { 56 } else { 0 };
    let mut chart = builder
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .right_y_label_area_size(right)
        .build_cartesian_2d(axes.x.clone(), axes.y.clone())
        .map_err(|e| err(&e))?
        .set_secondary_coord(axes.x.clone(), axes.y_fraction.clone().unwrap_or(0.0..1.0));
    chart
        .configure_mesh()
        .x_desc(t.x_label.as_str())
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;
    if axes.y_fraction.is_some() {
        chart
            .configure_secondary_axes()
            .y_desc(t.fraction_label.as_str())
            .draw()
            .map_err(|e| err(&e))?;
    }
    for (i, ((_, p), name)) in lines.iter().zip(&t.names).enumerate() {
        let c = COLORS[i % COLORS.len()];
        let style = c.stroke_width(2);
        let line = LineSeries::new(p.iter().copied(), style);
        let dots = p.iter().map(|&(x, y)| Circle::new((x, y), 2, c.filled()));
        let anno = if axes.on_fraction_axis[i] {
            chart.draw_secondary_series(dots).map_err(|e| err(&e))?;
            chart.draw_secondary_series(line).map_err(|e| err(&e))?
        } else {
            chart.draw_series(dots).map_err(|e| err(&e))?;
            chart.draw_series(line).map_err(|e| err(&e))?
        };
        anno.label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
