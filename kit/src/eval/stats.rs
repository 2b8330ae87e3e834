//! Counts with their uncertainty: on a dev set of 28 pairs, 0.75 and 0.60 are one or two pairs apart, so every
//! accuracy and win rate comes with a 95% interval.

/// The 95% Wilson score interval of `successes` out of `n` (Wilson 1927): unlike the normal approximation it
/// stays inside [0, 1] and is sensible for small n and for rates near 0 or 1. (0, 1) when n = 0.
pub fn wilson_interval(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    const Z: f64 = 1.959_963_984_540_054; // the 97.5% quantile of the standard normal
    let (k, n) = (successes as f64, n as f64);
    let p = k / n;
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Accuracy of one group of examples (e.g. one `flaw` of a preference set), with its 95% Wilson interval.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAccuracy {
    pub group: String,
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
    pub low: f64,
    pub high: f64,
}

impl GroupAccuracy {
    fn new(group: String, correct: usize, total: usize) -> Self {
        let (low, high) = wilson_interval(correct, total);
        GroupAccuracy {
            group,
            correct,
            total,
            accuracy: if total == 0 { 0.0 } else { correct as f64 / total as f64 },
            low,
            high,
        }
    }
}

/// Accuracy per group, in order of first appearance, then an `all` row. `groups[i]` labels `correct[i]`.
pub fn accuracy_by_group(groups: &[String], correct: &[bool]) -> Vec<GroupAccuracy> {
    let mut order: Vec<&String> = vec![];
    for g in groups {
        if !order.contains(&g) {
            order.push(g);
        }
    }
    let mut rows: Vec<GroupAccuracy> = order
        .iter()
        .map(|&g| {
            let hits = groups.iter().zip(correct).filter(|(h, _)| *h == g);
            let (k, n) = hits.fold((0, 0), |(k, n), (_, &c)| (k + c as usize, n + 1));
            GroupAccuracy::new(g.clone(), k, n)
        })
        .collect();
    let total = correct.len().min(groups.len());
    let k = correct[..total].iter().filter(|&&c| c).count();
    rows.push(GroupAccuracy::new("all".into(), k, total));
    rows
}

/// How often system A beat system B on paired scores (a tie counts half, as in pairwise judging).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WinRate {
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// (wins + ties / 2) / n.
    pub rate: f64,
}

/// Win rate of the scores `a` over the paired scores `b` (higher is better).
pub fn win_rate(a: &[f64], b: &[f64]) -> WinRate {
    let (mut wins, mut ties, mut losses) = (0, 0, 0);
    for (x, y) in a.iter().zip(b) {
        match x.partial_cmp(y) {
            Some(std::cmp::Ordering::Greater) => wins += 1,
            Some(std::cmp::Ordering::Less) => losses += 1,
            _ => ties += 1,
        }
    }
    let n = wins + ties + losses;
    WinRate {
        wins,
        ties,
        losses,
        rate: if n == 0 {
            0.0
        } else {
            (wins as f64 + ties as f64 / 2.0) / n as f64
        },
    }
}

/// The mean of paired differences `after[i] − before[i]` (the same examples measured twice), with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanDifference {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    pub n: usize,
}

/// Mean paired difference with the normal-approximation interval mean ± z·s/√n (s: the sample standard deviation of
/// the differences). Pairing takes out the spread between examples (easy and hard problems), most of the spread of
/// either mean alone. With fewer than 2 pairs the interval is unbounded.
pub fn paired_difference(before: &[f64], after: &[f64]) -> MeanDifference {
    const Z: f64 = 1.959_963_984_540_054;
    let d: Vec<f64> = before.iter().zip(after).map(|(b, a)| a - b).collect();
    let n = d.len();
    let mean = d.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return MeanDifference {
            mean,
            low: f64::NEG_INFINITY,
            high: f64::INFINITY,
            n,
        };
    }
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = Z * (var / n as f64).sqrt();
    MeanDifference {
        mean,
        low: mean - half,
        high: mean + half,
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_closed_form_on_known_values() {
        // 21 of 28: centre (0.75 + z²/56) / (1 + z²/28), half-width from the formula, computed independently (Python, z = 1.959964): 0.56644, 0.87324.
        let (lo, hi) = wilson_interval(21, 28);
        assert!((lo - 0.5664).abs() < 1e-3 && (hi - 0.8732).abs() < 1e-3, "{lo} {hi}");
        let (lo, hi) = wilson_interval(0, 4);
        assert!(lo == 0.0 && (hi - 0.4899).abs() < 1e-3, "{lo} {hi}");
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
    }

    #[test]
    fn groups_keep_their_order_and_end_with_all() {
        let g: Vec<String> = ["b", "a", "b", "a", "a"].iter().map(|s| s.to_string()).collect();
        let rows = accuracy_by_group(&g, &[true, false, true, true, false]);
        let names: Vec<&str> = rows.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(names, ["b", "a", "all"]);
        assert_eq!((rows[0].correct, rows[0].total), (2, 2));
        assert_eq!((rows[1].correct, rows[1].total), (1, 3));
        assert_eq!((rows[2].correct, rows[2].total), (3, 5));
    }

    #[test]
    fn paired_difference_matches_the_closed_form() {
        // d = [0.5, 0, 0.5, 0]: mean 0.25, s = √(4 · 0.0625 / 3) = 0.288675, half-width 1.959964 · s / 2 = 0.282897.
        let m = paired_difference(&[0.0, 0.5, 0.25, 1.0], &[0.5, 0.5, 0.75, 1.0]);
        assert_eq!(m.n, 4);
        assert!((m.mean - 0.25).abs() < 1e-12);
        assert!(
            (m.low + 0.032897).abs() < 1e-5 && (m.high - 0.532897).abs() < 1e-5,
            "{m:?}"
        );
        let one = paired_difference(&[0.0], &[1.0]);
        assert_eq!((one.mean, one.low, one.high), (1.0, f64::NEG_INFINITY, f64::INFINITY));
    }

    #[test]
    fn ties_count_half() {
        let w = win_rate(&[1.0, 2.0, 3.0, 0.0], &[0.0, 2.0, 1.0, 5.0]);
        assert_eq!((w.wins, w.ties, w.losses), (2, 1, 1));
        assert!((w.rate - 0.625).abs() < 1e-12);
    }
}
