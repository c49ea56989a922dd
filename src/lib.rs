//! stepctr: build a container stage by stage, for real, and watch every kernel call.
//!
//! The library holds everything; `main.rs` only parses arguments and maps errors to exit codes.

pub mod book;
pub mod cli;
pub mod demo;
pub mod doctor;
pub mod exec;
pub mod image;
pub mod kernel;
pub mod lesson;
pub mod lifecycle;
pub mod net;
pub mod oci;
pub mod pipeline;
pub mod ps;
pub mod remove;
pub mod security;
pub mod shim;
pub mod stage;
pub mod state;
pub mod stats;
pub mod tty;
pub mod userns;
pub mod volume;
