//! Every subcommand and flag, with help text that teaches.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "stepctr",
    version,
    about = "Build a container stage by stage, for real, and watch every kernel call",
    long_about = "stepctr does what `docker run` does, as six separate steps you can run one at a \
time and inspect in between:\n\n  pull → load → cgroup → ns → fs → start\n\nEvery system call \
is printed as it happens, in strace's syntax, with why it is made.\n\nTry: sudo stepctr all",
    after_help = "Stage by stage:\n  stepctr pull\n  stepctr load demo\n  stepctr cgroup demo --memory 256M --pids-limit 64\n  stepctr ns demo\n  stepctr fs demo\n  stepctr start demo -- sh\n  stepctr rm demo"
)]
pub struct Cli {
    /// Print nothing but errors (and the container's own output)
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Show every argument in full (long strings are shortened by default)
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Write the narration to FILE instead of stderr
    #[arg(long, global = true, value_name = "FILE")]
    pub trace_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stage 1: get an image into the local store (the default image is built offline)
    Pull {
        /// The image: omit for the default busybox image, or oci:DIR[:TAG] for an OCI layout
        image: Option<String>,
    },
    /// Stage 2: create a container and unpack its image's layers
    Load {
        /// Name of the new container
        name: String,
        /// The image (must be pulled first); omit for the default image
        image: Option<String>,
    },
    /// Stage 3: create the container's cgroup and write its limits
    Cgroup {
        /// The container
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Stage 4: create the container's namespaces and pin them as files
    Ns {
        /// The container
        name: String,
    },
    /// Stage 5: mount the container's root filesystem (overlayfs) in its mount namespace
    Fs {
        /// The container
        name: String,
    },
    /// Stage 6: run the command as PID 1 of the container and wait for it
    Start {
        /// The container
        name: String,
        /// The command (default: the image's entrypoint and cmd)
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// All six stages in order: pull, load, cgroup, ns, fs, start
    All {
        /// The image; omit for the default busybox image
        image: Option<String>,
        /// Name of the container (default: a fresh one, like ctr-1a2b3c)
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Remove the container once it has stopped
        #[arg(long)]
        rm: bool,
        /// The command (default: the image's entrypoint and cmd)
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Remove containers: kill their processes, unmount, remove cgroups and files
    Rm {
        /// The containers
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every container
    Reset,
    /// List containers and the stages they have done
    Ps,
}

#[derive(Debug, Args, Clone, Default)]
pub struct LimitArgs {
    /// Memory limit, e.g. 256M or 1G
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Maximum number of processes in the container
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u64>,
}
