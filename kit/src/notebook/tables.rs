//! Library values as notebook tables and charts: the library returns data (a memory plan, the machine, accuracies
//! per group, a run's metrics); this layer, above it, decides how they are shown.
use crate::eval::GroupAccuracy;
use crate::memory::MemoryPlan;
use crate::plot::Series;
use crate::system::Machine;
use crate::train::TrainOutput;
use crate::Result;

use super::{Chart, Table};

impl MemoryPlan {
    /// The plans as a table (GiB).
    pub fn table(plans: &[MemoryPlan]) -> Table {
        let mut t = Table::new(&["model", "base (4-bit)", "LoRA + AdamW", "activations", "total GiB"]);
        for p in plans {
            t.push(&[
                p.name.clone(),
                format!("{:.2}", p.base_gib),
                format!("{:.2}", p.lora_gib),
                format!("{:.2}", p.activations_gib),
                format!("{:.2}", p.total_gib()),
            ]);
        }
        t
    }
}

impl Machine {
    /// The machine as a two-column table.
    pub fn table(&self) -> Table {
        let mut t = Table::new(&["item", "value"]);
        t.push(&["OS".to_string(), format!("{} ({})", self.os, self.arch)]);
        t.push(&["CPU threads".to_string(), self.cpu_threads.to_string()]);
        t.push(&[
            "RAM".to_string(),
            format!(
                "{:.1} GiB total, {:.1} GiB available",
                self.ram_total_gib, self.ram_available_gib
            ),
        ]);
        if self.gpus.is_empty() {
            t.push(&["GPU", "none found (nvidia-smi)"]);
        }
        for (i, g) in self.gpus.iter().enumerate() {
            t.push(&[
                format!("GPU {i}"),
                format!("{}: {:.1} GiB VRAM, {:.1} GiB in use", g.name, g.total_gib, g.used_gib),
            ]);
        }
        t.push(&[
            "kit".to_string(),
            format!("{} (cuda feature: {})", self.kit_version, self.cuda_built),
        ]);
        t.push(&[
            "rustc".to_string(),
            self.rustc.clone().unwrap_or_else(|| "not on PATH".into()),
        ]);
        t
    }
}

impl TrainOutput {
    /// `keys` against √`kl_key`, one line each: Gao et al. (2023)'s picture of over-optimisation, where a proxy
    /// reward keeps rising with the KL to the reference while a gold reward turns down. E.g.
    /// `out.plot_against_sqrt_kl("kl", &["rewards/proxy/mean", "rewards/gold/mean"], "…")`; DPO's KL is `eval_kl`.
    /// Lines that lack either key are left out.
    pub fn plot_against_sqrt_kl(&self, kl_key: &str, keys: &[&str], title: &str) -> Result<Chart> {
        Chart::lines(
            &against_sqrt_kl(&self.log_history, kl_key, keys),
            title,
            &format!("√{kl_key}"),
        )
    }

    /// A chart of `keys` over this run (e.g. `["loss", "eval_loss"]`), shown inline when a notebook cell ends with it;
    /// its title is the keys. Accuracies get their own 0–1 axis.
    pub fn plot(&self, keys: &[&str]) -> Result<Chart> {
        self.plot_titled(keys, &keys.join(", "))
    }

    /// [`TrainOutput::plot`] with a title of your own (e.g. in Japanese: `"DPO の暗黙の報酬"`).
    pub fn plot_titled(&self, keys: &[&str], title: &str) -> Result<Chart> {
        Chart::metrics(&self.log_history, keys, title)
    }
}

/// (√KL, value) lines of `keys`, keys without a point left out.
fn against_sqrt_kl(history: &[crate::metrics::Metrics], kl_key: &str, keys: &[&str]) -> Vec<Series> {
    keys.iter()
        .map(|k| {
            let points = crate::metrics::paired(history, kl_key, k);
            (
                k.to_string(),
                points.into_iter().map(|(kl, y)| (kl.max(0.0).sqrt(), y)).collect(),
            )
        })
        .filter(|(_, points): &Series| !points.is_empty())
        .collect()
}

/// Accuracies per group side by side, one column per system (e.g. DPO and a length-only baseline), each cell
/// "correct/total = accuracy [95% Wilson interval]". The columns must list the same groups in the same order
/// (as [`crate::eval::accuracy_by_group`] gives for the same `groups`); `group_header` names the first column.
pub fn accuracy_table(group_header: &str, columns: &[(&str, &[GroupAccuracy])]) -> Table {
    let mut headers = vec![group_header.to_string(), "n".to_string()];
    headers.extend(columns.iter().map(|(name, _)| name.to_string()));
    let mut t = Table::new(&headers);
    let rows = columns.first().map_or(0, |(_, c)| c.len());
    for i in 0..rows {
        let first = &columns[0].1[i];
        let mut cells = vec![first.group.clone(), first.total.to_string()];
        for (_, c) in columns {
            cells.push(c.get(i).map_or("-".to_string(), |g| {
                format!(
                    "{}/{} = {:.2} [{:.2}, {:.2}]",
                    g.correct, g.total, g.accuracy, g.low, g.high
                )
            }));
        }
        t.push(&cells);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{accuracy_by_group, wilson_interval};

    #[test]
    fn accuracy_table_puts_systems_side_by_side_with_counts_and_intervals() {
        let groups: Vec<String> = ["a", "a", "b", "a"].iter().map(|s| s.to_string()).collect();
        let x = accuracy_by_group(&groups, &[true, true, false, false]);
        let y = accuracy_by_group(&groups, &[false, false, true, true]);
        let md = accuracy_table("flaw", &[("x", &x), ("y", &y)]).to_markdown();
        let (lo, hi) = wilson_interval(2, 3);
        let expected = format!(
            "| flaw | n | x | y |\n|---|---|---|---|\n| a | 3 | 2/3 = 0.67 [{lo:.2}, {hi:.2}] | 1/3 = 0.33 [{:.2}, {:.2}] |\n",
            wilson_interval(1, 3).0,
            wilson_interval(1, 3).1
        );
        assert!(md.starts_with(&expected), "{md}");
        assert!(md.contains("| all | 4 | 2/4 = 0.50"), "{md}");
    }

    #[test]
    fn rewards_against_sqrt_kl_put_the_root_on_the_x_axis() {
        let line = |kl: f64, r: f64| -> crate::metrics::Metrics {
            [
                ("step".to_string(), 1.0),
                ("kl".to_string(), kl),
                ("reward".to_string(), r),
            ]
            .into()
        };
        let out = TrainOutput {
            global_step: 2,
            training_loss: 0.0,
            log_history: vec![line(0.0, 0.1), line(0.25, 0.4)],
            adapter_dir: "unused".into(),
            interrupted: false,
            train_runtime: 0.0,
        };
        let chart = out.plot_against_sqrt_kl("kl", &["reward", "absent"], "proxy").unwrap();
        assert!(
            chart.svg.contains("√kl") && chart.svg.contains("reward"),
            "{}",
            chart.svg
        );
        assert!(!chart.svg.contains("absent"));
        let lines = against_sqrt_kl(&out.log_history, "kl", &["reward", "absent"]);
        assert_eq!(lines, vec![("reward".to_string(), vec![(0.0, 0.1), (0.5, 0.4)])]);
    }
}
