//! Guided lessons (issue 7; see docs/lessons-plan.md). So far: the lesson file format.

pub mod parse;
