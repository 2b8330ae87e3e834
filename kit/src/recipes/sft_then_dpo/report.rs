//! The recipe's outcome as tables: what changed on held-out data, against the targets the README states for the
//! main job.
use std::fmt::Write as _;

use crate::eval::{win_rate, Answers, GroupAccuracy, HeldOut};
use crate::metrics::keys;
use crate::notebook::Table;
use crate::train::TrainOutput;

/// One phase's answers (before training, after SFT, after DPO).
pub struct Phase {
    pub name: String,
    pub answers: Answers,
}

/// What the recipe did and measured.
pub struct SftThenDpoReport {
    pub model: String,
    pub held_out: Vec<HeldOut>,
    pub phases: Vec<Phase>,
    pub sft: TrainOutput,
    pub dpo: TrainOutput,
    /// DPO's held-out ranking accuracy (implicit reward of chosen > rejected) per flaw, then `all`.
    pub dpo_by_flaw: Vec<GroupAccuracy>,
    /// The length-only baseline on the same pairs (chosen = the answer with fewer tokens).
    pub length_by_flaw: Vec<GroupAccuracy>,
    /// Seconds per part of the run.
    pub timings: Vec<(String, f64)>,
    pub wall_s: f64,
}

fn first(out: &TrainOutput, key: &str) -> Option<f64> {
    out.log_history.iter().find_map(|m| m.get(key).copied())
}

fn last(out: &TrainOutput, key: &str) -> Option<f64> {
    out.log_history.iter().rev().find_map(|m| m.get(key).copied())
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

fn rate(k: usize, n: usize) -> String {
    format!("{k}/{n} ({:.0}%)", 100.0 * k as f64 / n.max(1) as f64)
}

fn interval(g: &GroupAccuracy) -> String {
    format!(
        "{}/{} = {:.2} [{:.2}, {:.2}]",
        g.correct, g.total, g.accuracy, g.low, g.high
    )
}

impl SftThenDpoReport {
    fn phase(&self, i: usize) -> &Answers {
        &self.phases[i].answers
    }

    /// The outcome against the targets.
    pub fn outcome_table(&self) -> Table {
        let n = self.held_out.len();
        let mut t = Table::new(&["held-out measure", "before", "after SFT", "after DPO", "target"]);
        let (l0, l1) = (first(&self.sft, keys::EVAL_LOSS), last(&self.sft, keys::EVAL_LOSS));
        let drop = match (l0, l1) {
            (Some(a), Some(b)) if a > 0.0 => format!(" ({:+.0}%)", 100.0 * (b - a) / a),
            _ => String::new(),
        };
        t.push(&[
            "SFT eval_loss (sft_ja/dev)".to_string(),
            num(l0),
            format!("{}{drop}", num(l1)),
            "-".into(),
            "≥ 20% lower after SFT".into(),
        ]);
        let ended: Vec<String> = (0..3)
            .map(|i| rate(self.phase(i).ended.iter().filter(|&&e| e).count(), n))
            .collect();
        t.push(&[
            "answers ending with end-of-turn".to_string(),
            ended[0].clone(),
            ended[1].clone(),
            ended[2].clone(),
            "≥ 90% after SFT".into(),
        ]);
        t.push(&[
            "DPO eval_loss (pref_ja/dev)".to_string(),
            "-".into(),
            // Policy = reference before the first step: the loss is ln 2 exactly (not measured).
            format!("{:.3} (ln 2)", std::f64::consts::LN_2),
            num(last(&self.dpo, keys::EVAL_LOSS)),
            format!("< ln 2 = {:.3}", std::f64::consts::LN_2),
        ]);
        let all = self.dpo_by_flaw.last();
        t.push(&[
            "DPO rewards/accuracies (pref_ja/dev)".to_string(),
            "-".into(),
            "-".into(),
            all.map_or("-".into(), interval),
            "≥ 0.75".into(),
        ]);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        t.push(&[
            "mean chrF vs the preferred answer".to_string(),
            format!("{:.1}", mean(&self.phase(0).chrf)),
            format!("{:.1}", mean(&self.phase(1).chrf)),
            format!("{:.1}", mean(&self.phase(2).chrf)),
            "-".into(),
        ]);
        let w0 = win_rate(&self.phase(2).chrf, &self.phase(0).chrf);
        let w1 = win_rate(&self.phase(2).chrf, &self.phase(1).chrf);
        t.push(&[
            "after-DPO answer wins (chrF), vs before / vs after SFT".to_string(),
            format!("{}-{}-{} ({:.0}%)", w0.wins, w0.ties, w0.losses, 100.0 * w0.rate),
            format!("{}-{}-{} ({:.0}%)", w1.wins, w1.ties, w1.losses, 100.0 * w1.rate),
            "-".into(),
            "≥ 70% vs before".into(),
        ]);
        t.push(&[
            "wall time".to_string(),
            "-".into(),
            "-".into(),
            format!("{:.0} s", self.wall_s),
            "≤ 300 s".into(),
        ]);
        t
    }

    /// DPO's held-out accuracy per flaw next to the length-only baseline.
    pub fn flaw_table(&self) -> Table {
        let mut t = Table::new(&["flaw", "DPO accuracy [95% CI]", "length-only baseline"]);
        for (d, l) in self.dpo_by_flaw.iter().zip(&self.length_by_flaw) {
            t.push(&[d.group.clone(), interval(d), format!("{}/{}", l.correct, l.total)]);
        }
        t
    }

    pub fn timing_table(&self) -> Table {
        let mut t = Table::new(&["part", "seconds"]);
        for (name, s) in &self.timings {
            t.push(&[name.clone(), format!("{s:.0}")]);
        }
        t.push(&["total".to_string(), format!("{:.0}", self.wall_s)]);
        t
    }
}

const SCORED_BY: &str = "Answers are greedy (no repetition penalty), at most the given new tokens, to the held-out \
pref_ja/dev prompts. They are scored by chrF (character n-gram F-score, β = 2, sacreBLEU's definition) against \
the row's preferred answer: independent of both training losses. DPO accuracy: the implicit reward of the \
preferred answer is higher (95% Wilson intervals); the length-only baseline picks the answer with fewer tokens.";

/// The tables printed at the end of the run.
pub fn summary_table(r: &SftThenDpoReport) -> String {
    format!(
        "== outcome ({})\n{}\n{}\n{}\n{SCORED_BY}\n",
        r.model,
        r.outcome_table().to_markdown(),
        r.flaw_table().to_markdown(),
        r.timing_table().to_markdown()
    )
}

/// The run as Markdown: the tables, then each held-out prompt's three answers.
pub fn summary_markdown(r: &SftThenDpoReport) -> String {
    let mut s = format!(
        "# kit quickstart ({})\n\n## Outcome\n\n{}\n## DPO on held-out pairs, per flaw\n\n{}\n## Time\n\n{}\n{SCORED_BY}\n\n## Answers\n",
        r.model,
        r.outcome_table().to_markdown(),
        r.flaw_table().to_markdown(),
        r.timing_table().to_markdown()
    );
    for (i, h) in r.held_out.iter().enumerate() {
        let _ = write!(s, "\n### {} ({})\n\n", h.prompt, h.group);
        for p in &r.phases {
            let a = &p.answers;
            let end = if a.ended[i] { "" } else { " [cut at max_new_tokens]" };
            let _ = writeln!(
                s,
                "- {} (chrF {:.1}){end}: {}",
                p.name,
                a.chrf[i],
                a.texts[i].replace('\n', " ")
            );
        }
        let _ = writeln!(s, "- preferred answer: {}", h.reference.replace('\n', " "));
    }
    s
}
