//! stepctr as an OCI runtime (issue 9, docs/oci-plan.md): the runtime command line that podman
//! and containerd speak (create, start, state, kill, delete, spec, features), bundles
//! (config.json + rootfs, read with the oci-spec crate), and `stepctr bundle IMAGE DIR`.
//!
//! A bundle is one more source for the six stages: `create` runs load, cgroup, ns and fs from
//! config.json and starts PID 1, which waits before its execve; `start` lets it exec.

pub mod bundle;
pub mod config;
pub mod create;
pub mod hooks;
pub mod lifecycle;
pub mod seccomp;
pub mod spec;
