//! A progress bar for trainer runs in a terminal: the library's progress is a callback, and this one draws the bar
//! (indicatif) and prints logged lines above it. Elsewhere (a pipe, a log file) the library's plain lines are kept.
use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use kit::train::callbacks::{progress_line, summary};
use kit::train::{Metrics, TrainerCallback, TrainerControl, TrainerState};
use kit::Result;

#[derive(Default)]
pub struct TerminalProgress {
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    /// A bar when stderr is a terminal, else `None` (keep the plain lines).
    pub fn if_terminal() -> Option<Self> {
        std::io::stderr().is_terminal().then(Self::default)
    }

    fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }
}

impl TrainerCallback for TerminalProgress {
    fn on_train_begin(&mut self, state: &TrainerState) -> Result<()> {
        let bar = ProgressBar::new(state.max_steps as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(state.global_step as u64);
        self.bar = Some(bar);
        Ok(())
    }
    fn on_step_end(&mut self, state: &TrainerState, metrics: &Metrics, _: &mut TrainerControl) -> Result<()> {
        if let Some(bar) = &self.bar {
            bar.set_position(state.global_step as u64);
            bar.set_message(summary(metrics));
        }
        Ok(())
    }
    fn on_log(&mut self, state: &TrainerState, logs: &Metrics, _: &mut TrainerControl) -> Result<()> {
        self.println(&progress_line(logs, state.max_steps));
        Ok(())
    }
    fn on_evaluate(&mut self, state: &TrainerState, metrics: &Metrics, _: &mut TrainerControl) -> Result<()> {
        self.println(&progress_line(metrics, state.max_steps));
        Ok(())
    }
    fn on_save(&mut self, _: &TrainerState, _: &Path) -> Result<()> {
        Ok(())
    }
    fn on_train_end(&mut self, _: &TrainerState, _: &[kit::train::Metrics]) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        Ok(())
    }
    fn on_message(&mut self, text: &str) {
        self.println(text);
    }
}
