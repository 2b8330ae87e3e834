//! Which axis each line goes on, and the ranges of the axes: accuracies (fractions in 0–1) get their own right-hand
//! axis fixed at 0–1, so they are not squashed against a loss or a reward scale.
use std::ops::Range;

use super::Series;
use crate::{Error, Result};

/// A metric that is a fraction and belongs on the 0–1 axis: its name ends in `accuracy` or `accuracies`
/// (`rewards/accuracies`, `eval_rewards/accuracies`, a reward model's `accuracy`) and every value is in 0–1.
pub fn is_fraction(name: &str, points: &[(f64, f64)]) -> bool {
    let n = name.to_ascii_lowercase();
    (n.ends_with("accuracy") || n.ends_with("accuracies")) && points.iter().all(|&(_, y)| (0.0..=1.0).contains(&y))
}

/// The axes of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Axes {
    pub x: Range<f64>,
    /// The left axis.
    pub y: Range<f64>,
    /// The right axis (0–1), when some lines are fractions and others are not.
    pub y_fraction: Option<Range<f64>>,
    /// For each line, whether it is drawn against the right axis.
    pub on_fraction_axis: Vec<bool>,
}

/// Lay out `lines`: fractions on a right axis of 0–1 when other lines share the chart, or on a left axis of 0–1 when
/// they are alone; the other lines on the left axis over their own range, padded by 8%.
pub fn axes(lines: &[Series], title: &str) -> Result<Axes> {
    let fraction: Vec<bool> = lines.iter().map(|(n, p)| is_fraction(n, p)).collect();
    let all_fractions = fraction.iter().all(|&f| f);
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for ((_, pts), &f) in lines.iter().zip(&fraction) {
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            if !f || all_fractions {
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
    }
    if x0 > x1 {
        return Err(Error::Input(format!("chart `{title}`: nothing to draw")));
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let y = if all_fractions {
        0.0..1.0
    } else {
        let pad = ((y1 - y0) * 0.08).max(1e-6);
        (y0 - pad)..(y1 + pad)
    };
    let mixed = !all_fractions && fraction.iter().any(|&f| f);
    Ok(Axes {
        x: x0..x1,
        y,
        y_fraction: mixed.then_some(0.0..1.0),
        on_fraction_axis: fraction.iter().map(|&f| f && mixed).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, ys: &[f64]) -> Series {
        (
            name.to_string(),
            ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect(),
        )
    }

    #[test]
    fn accuracies_go_on_their_own_zero_to_one_axis() {
        let lines = [
            line("rewards/chosen", &[0.0, 2.5, 4.0]),
            line("rewards/margins", &[0.0, 6.0, 9.0]),
            line("rewards/accuracies", &[0.0, 0.5, 0.875]),
        ];
        let a = axes(&lines, "dpo").unwrap();
        assert_eq!(a.on_fraction_axis, vec![false, false, true]);
        assert_eq!(a.y_fraction, Some(0.0..1.0));
        // The left axis spans the rewards only (0..9 padded by 8%), not squeezed by the accuracies.
        assert!(
            (a.y.start + 0.72).abs() < 1e-9 && (a.y.end - 9.72).abs() < 1e-9,
            "{:?}",
            a.y
        );
        assert_eq!(a.x, 0.0..2.0);

        // Alone, accuracies use the left axis, fixed at 0–1 whatever their values.
        let alone = axes(&[line("eval_rewards/accuracies", &[0.25, 0.5])], "acc").unwrap();
        assert_eq!(
            (alone.y, alone.y_fraction, alone.on_fraction_axis),
            (0.0..1.0, None, vec![false])
        );

        // Losses are not fractions, even when they happen to lie in 0–1; an "accuracy" outside 0–1 is not either.
        let plain = axes(&[line("loss", &[0.9, 0.4]), line("accuracy", &[3.0])], "x").unwrap();
        assert_eq!((plain.y_fraction, plain.on_fraction_axis), (None, vec![false, false]));
        assert!(axes(&[], "empty").is_err());
    }
}
