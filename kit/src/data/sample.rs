//! Subsets of a dataset for short runs.
use rand::seq::SliceRandom;
use rand::SeedableRng;

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
}
