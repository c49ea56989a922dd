//! Capabilities: root's power cut into pieces, and the container keeps only docker's default
//! set of them. (Being written: issue 5.)

use crate::kernel::Kernel;
use anyhow::Result;

/// Refuse unknown capability names (`--cap-add`, `--cap-drop`).
pub fn check_names(_names: &[String]) -> Result<()> {
    Ok(())
}

/// Drop what the profile does not keep, and set no_new_privs.
pub fn apply(_k: &dyn Kernel, _p: &super::Profile) -> Result<()> {
    Ok(())
}
