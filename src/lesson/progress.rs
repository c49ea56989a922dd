//! A learner's progress through the lessons, kept per user in `lessons.json` beside their image
//! store (`$STEPCTR_ROOT`, or the user's own store: see `state::Paths`), written atomically.
//! `stepctr lesson status --json` exports it for a teacher.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One lesson's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lesson {
    /// Steps run, of how many the lesson has.
    pub steps_run: usize,
    pub steps: usize,
    /// Checks that passed and failed in the last run.
    pub checks_passed: usize,
    pub checks_failed: usize,
    /// Quizzes answered right.
    pub quizzes_right: usize,
    /// Every step run and every check passed, in the last run.
    pub finished: bool,
    /// When the last run ended, in seconds since the epoch.
    pub at: u64,
}

/// Lesson number -> progress.
pub type Progress = BTreeMap<u32, Lesson>;

fn file() -> PathBuf {
    crate::state::Paths::from_env().root.join("lessons.json")
}

pub fn load() -> Progress {
    std::fs::read(file())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Record one lesson's progress (temp file + rename: never half a file).
pub fn save(n: u32, l: Lesson) -> Result<()> {
    let mut all = load();
    all.insert(n, l);
    let path = file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Forget one lesson's progress (`--restart`).
pub fn forget(n: u32) -> Result<()> {
    let mut all = load();
    if all.remove(&n).is_some() {
        let path = file();
        std::fs::write(&path, serde_json::to_vec_pretty(&all)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// How `stepctr lesson` shows it: `✓`, `3/7`, or nothing.
pub fn mark(l: Option<&Lesson>) -> String {
    match l {
        Some(l) if l.finished => "✓".to_string(),
        Some(l) => format!("{}/{}", l.steps_run, l.steps),
        None => String::new(),
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
