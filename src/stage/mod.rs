//! The six stages of `docker run`, one file each, in the order the kernel sees them:
//! pull → load → cgroup → ns → fs → start. Each reads what the stages before it left in the
//! container's state directory and leaves its own results there.

pub mod cgroup;
pub mod fs;
pub mod load;
pub mod ns;
pub mod pull;
pub mod start;

use crate::kernel::Kernel;
use crate::state::Stage;

/// Print the stage's header: `==> [3/6] cgroup: ...`.
pub fn header(k: &dyn Kernel, stage: Stage, what: &str) {
    k.header(stage.number(), Stage::ALL.len(), stage.name(), what);
}
