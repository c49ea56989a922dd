//! Guided lessons (issue 7; see docs/lessons-plan.md): the lesson file format (parse.rs), the
//! checks of the machine's state (checks.rs), the runner (run.rs), the learner's progress (progress.rs).

pub mod checks;
pub mod parse;
pub mod progress;
pub mod run;
