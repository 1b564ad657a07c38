//! kbuild's progress events as an indicatif bar on stderr (hidden when stderr is no terminal).

use indicatif::{ProgressBar, ProgressStyle};
use kernelx_kbuild::{Event, Progress};

/// One bar per tunable; each stage resets its length and message.
pub struct BuildProgress {
    bar: ProgressBar,
}

impl BuildProgress {
    /// A bar for `tunable`.
    pub fn new(tunable: &str) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} {msg:30} [{bar:30}] {pos}/{len} {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(tunable.to_owned());
        Self { bar }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for BuildProgress {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { stage, total } => {
                self.bar.set_length(total as u64);
                self.bar.set_position(0);
                self.bar.set_message(stage.to_string());
            }
            Event::Step { .. } => self.bar.inc(1),
            Event::Finished { .. } => {}
        }
    }
}
