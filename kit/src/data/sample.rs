//! Subsets and variants of a dataset for short runs and experiments.
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::formats::{Origin, PreferenceRow};

/// `n` rows spread evenly over the groups `groups[i]` labels (e.g. `pref_ja`'s `flaw`): each group's rows shuffled
/// with `seed`, then one row of each group in turn, groups in order of first appearance. A short run on the first
/// rows of a file sorted by group would see one kind of example only.
pub fn stratified_take<T>(rows: Vec<T>, groups: &[String], n: usize, seed: u64) -> Vec<T> {
    let mut buckets: Vec<(&String, Vec<T>)> = vec![];
    for (row, g) in rows.into_iter().zip(groups) {
        match buckets.iter_mut().find(|(name, _)| *name == g) {
            Some((_, b)) => b.push(row),
            None => buckets.push((g, vec![row])),
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut queues: Vec<std::vec::IntoIter<T>> = buckets
        .into_iter()
        .map(|(_, mut b)| {
            b.shuffle(&mut rng);
            b.into_iter()
        })
        .collect();
    let mut picked = Vec::with_capacity(n);
    while picked.len() < n {
        let before = picked.len();
        for q in queues.iter_mut() {
            if picked.len() < n {
                picked.extend(q.next());
            }
        }
        if picked.len() == before {
            break; // every group is used up
        }
    }
    picked
}

/// A preference pair whose labels can be swapped: `chosen` becomes `rejected` and the other way round.
pub trait LabelledPair: Clone {
    fn swap_labels(&mut self);
}

impl LabelledPair for (Origin, PreferenceRow) {
    fn swap_labels(&mut self) {
        std::mem::swap(&mut self.1.chosen, &mut self.1.rejected);
    }
}

/// Label noise for data-quality experiments: the pairs with their labels swapped in `round(rate × n)` of them,
/// picked by a shuffle with `seed`; also says which rows were swapped. With the same seed, the rows swapped at a
/// lower rate are among those swapped at a higher one, so 25% and 50% noise differ only in the extra swaps.
/// Rows as read (`(Origin, PreferenceRow)`) or as DPO tokenized and scored them (`PairExample`).
/// (`datasets/pref_ja/noisy` is `pref_ja/train` built the same way at 25%.)
pub fn swap_labels<T: LabelledPair>(rows: &[T], rate: f64, seed: u64) -> (Vec<T>, Vec<bool>) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let k = (rate.clamp(0.0, 1.0) * rows.len() as f64).round() as usize;
    let mut swapped = vec![false; rows.len()];
    for &i in &order[..k] {
        swapped[i] = true;
    }
    let noisy = rows
        .iter()
        .zip(&swapped)
        .map(|(row, &swap)| {
            let mut row = row.clone();
            if swap {
                row.swap_labels();
            }
            row
        })
        .collect();
    (noisy, swapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_groups_in_turn_and_stops_when_rows_run_out() {
        let groups: Vec<String> = ["a", "a", "a", "b", "c", "c"].iter().map(|s| s.to_string()).collect();
        let rows: Vec<usize> = (0..6).collect();
        let first = stratified_take(rows.clone(), &groups, 3, 7);
        let label = |i: &usize| groups[*i].as_str();
        assert_eq!(first.iter().map(label).collect::<Vec<_>>(), ["a", "b", "c"]);
        let all = stratified_take(rows.clone(), &groups, 100, 7);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, rows);
        assert_eq!(all.iter().map(label).collect::<Vec<_>>()[..3], ["a", "b", "c"]);
        assert_eq!(stratified_take(rows, &groups, 4, 7).len(), 4);
    }

    #[test]
    fn the_seed_decides_the_order_within_a_group() {
        let groups = vec!["g".to_string(); 20];
        let rows: Vec<usize> = (0..20).collect();
        assert_eq!(
            stratified_take(rows.clone(), &groups, 5, 1),
            stratified_take(rows.clone(), &groups, 5, 1)
        );
        assert_ne!(
            stratified_take(rows.clone(), &groups, 5, 1),
            stratified_take(rows, &groups, 5, 2)
        );
    }

    #[test]
    fn swaps_the_given_share_and_nests_lower_rates_in_higher_ones() {
        use crate::data::Turns;
        let rows: Vec<(Origin, PreferenceRow)> = (0..10)
            .map(|i| {
                let origin = Origin {
                    path: "t.jsonl".into(),
                    line: i + 1,
                };
                let row = PreferenceRow {
                    prompt: Turns::Text(format!("q{i}")),
                    chosen: Turns::Text(format!("good{i}")),
                    rejected: Turns::Text(format!("bad{i}")),
                    margin: None,
                };
                (origin, row)
            })
            .collect();
        let (quarter, q_marks) = swap_labels(&rows, 0.25, 3);
        let (half, h_marks) = swap_labels(&rows, 0.5, 3);
        // round(2.5) = 3 and 5 rows swapped; every row swapped at 25% is swapped at 50%.
        assert_eq!(q_marks.iter().filter(|&&m| m).count(), 3);
        assert_eq!(h_marks.iter().filter(|&&m| m).count(), 5);
        assert!(q_marks.iter().zip(&h_marks).all(|(q, h)| !q || *h));
        for ((orig, noisy), &m) in rows.iter().zip(&half).zip(&h_marks) {
            assert_eq!(noisy.1.prompt, orig.1.prompt);
            let expected = if m {
                (&orig.1.rejected, &orig.1.chosen)
            } else {
                (&orig.1.chosen, &orig.1.rejected)
            };
            assert_eq!((&noisy.1.chosen, &noisy.1.rejected), expected);
        }
        assert_eq!(quarter.len(), 10);
        assert!(swap_labels(&rows, 0.0, 3).1.iter().all(|&m| !m));
    }
}
