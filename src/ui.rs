//! Every message minik prints to the user goes through here: one voice, one
//! set of symbols (as minikube's `out` package), spinners for anything slow.
//! Nothing else in the CLI writes to stdout/stderr directly, except commands
//! whose output *is* data (`--url`, `version`, `kubectl`).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A step that went well or is starting (`😄 minik v0.1 on Debian 12`).
pub fn step(symbol: &str, msg: impl AsRef<str>) {
    eprintln!("{symbol}  {}", msg.as_ref());
}

pub fn info(msg: impl AsRef<str>) {
    step("💡", msg);
}

pub fn success(msg: impl AsRef<str>) {
    step("🏄", msg);
}

pub fn warn(msg: impl AsRef<str>) {
    step("❗", msg);
}

/// An error the user can act on: what failed, then what to do.
pub fn error(msg: impl AsRef<str>) {
    step("❌", msg);
}

/// A spinner for a wait whose length is unknown. Hidden when stderr is not a
/// terminal (CI), where the step line printed by `spinner` is enough.
pub struct Spinner {
    bar: ProgressBar,
}

pub fn spinner(symbol: &str, msg: impl Into<String>) -> Spinner {
    let msg = msg.into();
    let bar = ProgressBar::new_spinner();
    if bar.is_hidden() {
        step(symbol, &msg);
    } else {
        bar.set_style(
            ProgressStyle::with_template(&format!("{symbol}  {{msg}} {{spinner}} {{elapsed}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(msg);
        bar.enable_steady_tick(Duration::from_millis(100));
    }
    Spinner { bar }
}

impl Spinner {
    pub fn set_message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }
    /// Ends the spinner, leaving its line in place.
    pub fn finish(self) {
        if !self.bar.is_hidden() {
            self.bar.finish();
        }
    }
}

/// A byte-counting progress bar (uploads): a bar when `total` is known, a
/// byte counter when not. Hidden when stderr is not a terminal, where the
/// step line printed here is enough.
pub fn progress_bytes(symbol: &str, msg: impl Into<String>, total: Option<u64>) -> ProgressBar {
    let msg = msg.into();
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if bar.is_hidden() {
        step(symbol, &msg);
        return bar;
    }
    let template = if total.is_some() {
        format!("{symbol}  {{msg}} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}}")
    } else {
        format!("{symbol}  {{msg}} {{spinner}} {{bytes}} {{bytes_per_sec}}")
    };
    bar.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(msg);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
