//! What a pull or push tells the person watching: a bar per layer on a terminal (indicatif),
//! docker-style plain lines otherwise, nothing with `-q`. All of it goes to stderr, so stdout
//! carries only results.

use crate::digest::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

#[derive(Clone)]
pub enum Progress {
    Quiet,
    Lines,
    Bars(MultiProgress),
}

impl Progress {
    /// Bars on a terminal, lines otherwise, nothing if quiet.
    pub fn for_stderr(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Progress::Lines
        }
    }

    pub fn line(&self, msg: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Lines => eprintln!("{msg}"),
            Progress::Bars(m) => {
                let _ = m.println(msg);
            }
        }
    }

    pub fn warn(&self, msg: &str) {
        // Warnings are shown even when quiet: they change what the user got.
        match self {
            Progress::Bars(m) => {
                let _ = m.println(format!("warning: {msg}"));
            }
            _ => eprintln!("warning: {msg}"),
        }
    }

    pub fn layer(&self, digest: &Digest) -> LayerProgress {
        let id = digest.short().to_string();
        match self {
            Progress::Quiet => LayerProgress { id, bar: None, lines: false },
            Progress::Lines => LayerProgress { id, bar: None, lines: true },
            Progress::Bars(m) => {
                let bar = m.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg:12} [{bar:30}] {bytes}/{total_bytes}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(id.clone());
                bar.set_message("Waiting");
                LayerProgress { id, bar: Some(bar), lines: false }
            }
        }
    }

    pub fn clear(&self) {
        if let Progress::Bars(m) = self {
            let _ = m.clear();
        }
    }
}

pub struct LayerProgress {
    id: String,
    bar: Option<ProgressBar>,
    lines: bool,
}

impl LayerProgress {
    pub fn hidden() -> LayerProgress {
        LayerProgress { id: String::new(), bar: None, lines: false }
    }

    pub fn downloading(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_message("Downloading");
        }
    }

    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    pub fn extracting(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message("Extracting");
        }
    }

    pub fn finish(&self, status: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(status.to_string());
        } else if self.lines {
            eprintln!("{}: {status}", self.id);
        }
    }
}
