//! Every subcommand and flag, with help text that teaches.

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    #[arg(long, global = true)]
    pub verbose: bool,

    /// Same as --verbose, written before the command (after it, as in docker, `-v` is a
    /// volume: `stepctr -v all -v /srv:/data`)
    #[arg(short = 'v', conflicts_with = "quiet")]
    pub verbose_short: bool,

    /// Write the narration to FILE instead of stderr
    #[arg(long, global = true, value_name = "FILE")]
    pub trace_file: Option<PathBuf>,

    /// Go at the class's pace: `step` stops before every kernel call, shows it on the terminal
    /// and waits for Enter (for a projector); q and Enter stops stepctr there (`stepctr rm NAME`
    /// removes what was made). Needs a terminal (without one, a note says so and stepctr runs
    /// straight through); not with -q
    #[arg(long, global = true, value_name = "MODE", env = "STEPCTR_PACE")]
    pub pace: Option<Pace>,

    /// OCI runtime: where container state lives (the run directory, instead of $STEPCTR_RUN);
    /// podman and containerd pass it to runc the same way
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// OCI runtime: also write errors to FILE (conmon reads it to report a failed create)
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// OCI runtime: the format of --log: text, or json (one object per line:
    /// {"level":"error","msg":...,"time":...})
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,

    /// OCI runtime: cgroupsPath is systemd's `slice:prefix:name` (stepctr has no systemd
    /// driver: it becomes the cgroupfs path slice/prefix-name.scope)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,

    /// OCI runtime: accepted for runc's sake (use -v or --trace-file to see every call)
    #[arg(long, global = true)]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// `--pace MODE`: how narration waits for the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pace {
    /// Pause before every narrated kernel call until Enter is pressed; a bulk run (a layer's
    /// files) pauses once for all of it. No pause before wait4 (it only waits), nor in a
    /// process that left the terminal's session (setsid: a daemon, a detached shim, the PID 1
    /// of -it once it has its own terminal)
    Step,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stage 1: get an image into the local store (the default image is built offline)
    #[command(
        long_about = "Stage 1: get an image into the local store, $STEPCTR_ROOT/images (an OCI \
image layout).\n\nFrom a registry, IMAGE is a reference as docker writes it: `alpine` (Docker \
Hub, library/alpine:latest), `alpine:3.19`, `ghcr.io/owner/repo:tag`, `localhost:5000/x`, \
`name@sha256:...`. stepctr speaks the OCI distribution API and narrates every request: the \
manifest (an index of platforms first, for multi-platform images), the token dance when the \
registry asks for one, then each blob, checked against its sha256 as it arrives. Loopback \
registries are spoken to over plain HTTP, every other one over HTTPS. Credentials come from \
--username/--password or from `docker login` (~/.docker/config.json, or $DOCKER_CONFIG).\n\n\
Without IMAGE, the default busybox image is built on this machine (no network). \
oci:DIR[:TAG] copies from an OCI image layout, docker-archive:FILE from a `docker save` tar.",
        after_help = "Examples:\n  stepctr pull alpine:3.19\n  stepctr pull --platform linux/arm64 alpine\n  stepctr pull localhost:5000/myimage@sha256:<64 hex>\n  stepctr pull oci:./layout:v1\n  stepctr pull docker-archive:busybox.tar   (after `docker save -o busybox.tar busybox`)"
    )]
    Pull {
        /// The image: a registry reference, oci:DIR[:TAG], docker-archive:FILE[:REF] (what
        /// `docker save` writes), or nothing for the default busybox image
        image: Option<String>,
        #[command(flatten)]
        registry: PullArgs,
    },
    /// Stage 2: create a container and unpack its image's layers
    Load {
        /// Name of the new container
        name: String,
        /// The image (must be pulled first); omit for the default image
        image: Option<String>,
        /// Apply all layers into one directory (whiteouts deleting for real) instead of one
        /// directory per layer for overlayfs: the image's root filesystem as one plain tree
        #[arg(long)]
        flatten: bool,
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
        #[command(flatten)]
        ns: NsArgs,
    },
    /// Stage 5: mount the container's root filesystem (overlayfs) in its mount namespace
    Fs {
        /// The container
        name: String,
        /// Bind-mount a host directory (or file) into the container: HOST:CTR[:ro|rw], absolute
        /// paths, repeatable. A missing HOST is created; its data survives `stepctr rm`
        #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
        volumes: Vec<String>,
        /// A nameserver for the container's /etc/resolv.conf (repeatable; default: the host's,
        /// less those on its loopback)
        #[arg(long, value_name = "IP")]
        dns: Vec<std::net::Ipv4Addr>,
    },
    /// Stage 6: run the command as PID 1 of the container and wait for it (an OCI container
    /// made by `stepctr create`: let its waiting PID 1 exec)
    Start {
        /// The container
        name: String,
        /// Run the command as USER[:GROUP] (names or ids, looked up in the container's
        /// /etc/passwd and /etc/group), instead of root
        #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
        user: Option<String>,
        /// Detach: return once PID 1 runs; its shim stays, output goes to `stepctr logs`
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep stdin open and relay it to the container (with -t: raw mode, every key goes in)
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the container a pseudo-terminal (`-it` for an interactive shell)
        #[arg(short = 't', long)]
        tty: bool,
        #[command(flatten)]
        security: SecurityArgs,
        /// Publish a container port on the host: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]
        /// (repeatable; needs --network bridge). A proxy relays what reaches the host port
        #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/udp]")]
        publish: Vec<String>,
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
        registry: PullArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        security: SecurityArgs,
        /// Publish a container port on the host: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]
        /// (repeatable; needs --network bridge). A proxy relays what reaches the host port
        #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/udp]")]
        publish: Vec<String>,
        /// Bind-mount a host directory (or file) into the container: HOST:CTR[:ro|rw], absolute
        /// paths, repeatable. A missing HOST is created; its data survives `stepctr rm`
        #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
        volumes: Vec<String>,
        /// Remove the container once it has stopped
        #[arg(long)]
        rm: bool,
        /// Detach: return once PID 1 runs; its shim stays, output goes to `stepctr logs`
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep stdin open and relay it to the container (with -t: raw mode, every key goes in)
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the container a pseudo-terminal (`-it` for an interactive shell)
        #[arg(short = 't', long)]
        tty: bool,
        /// Run the command as USER[:GROUP] (names or ids, looked up in the container's
        /// /etc/passwd and /etc/group), instead of root
        #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
        user: Option<String>,
        #[command(flatten)]
        ns: NsArgs,
        /// A nameserver for the container's /etc/resolv.conf (repeatable; default: the host's,
        /// less those on its loopback)
        #[arg(long, value_name = "IP")]
        dns: Vec<std::net::Ipv4Addr>,
        #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true,
              default_missing_value = "table", help = TIMINGS_HELP, long_help = TIMINGS_LONG_HELP)]
        timings: Option<TimingsFormat>,
        /// The command (default: the image's entrypoint and cmd)
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Remove containers: kill their processes, unmount, remove cgroups and files
    Rm {
        /// The containers
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove running containers too (their processes are killed)
        #[arg(short, long)]
        force: bool,
    },
    /// Run a command in a new container, as `docker run` does: all six stages, quietly
    #[command(
        long_about = "Run a command in a new container, as `docker run` does: pull (if the image is not in the store yet), load, cgroup, ns, fs, start. Quiet: nothing is narrated unless you ask with --verbose or --trace-file FILE. The command's stdout and stderr are relayed byte for byte and separately, stepctr exits with the command's exit code, and the command is PID 1.",
        after_help = "Examples:\n  stepctr run --rm localhost/stepctr-busybox sh -c 'echo hi'\n  stepctr run -d --name web -m 64M localhost/stepctr-busybox sleep 100\n  stepctr logs web; stepctr stop web; stepctr rm web"
    )]
    Run {
        /// Detach: return once PID 1 runs; its shim stays, output goes to `stepctr logs`
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep stdin open and relay it to the container (with -t: raw mode, every key goes in)
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the container a pseudo-terminal (`-it` for an interactive shell)
        #[arg(short = 't', long)]
        tty: bool,
        /// Remove the container once it has stopped
        #[arg(long)]
        rm: bool,
        /// Name of the container (default: a fresh one, like ctr-1a2b3c)
        #[arg(long)]
        name: Option<String>,
        /// Set an environment variable (repeatable)
        #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
        env: Vec<String>,
        /// Working directory inside the container
        #[arg(short = 'w', long = "workdir", value_name = "DIR")]
        workdir: Option<String>,
        /// Run the command as USER[:GROUP] (names or ids, looked up in the container's
        /// /etc/passwd and /etc/group), instead of root
        #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
        user: Option<String>,
        /// Hostname inside the container (default: its name)
        #[arg(long)]
        hostname: Option<String>,
        #[command(flatten)]
        ns: NsArgs,
        /// A nameserver for the container's /etc/resolv.conf (repeatable; default: the host's,
        /// less those on its loopback)
        #[arg(long, value_name = "IP")]
        dns: Vec<std::net::Ipv4Addr>,
        #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, require_equals = true,
              default_missing_value = "table", help = TIMINGS_HELP, long_help = TIMINGS_LONG_HELP)]
        timings: Option<TimingsFormat>,
        /// Bind-mount a host directory (or file): HOST:CTR[:ro|rw], repeatable
        #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
        volumes: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        security: SecurityArgs,
        /// Publish a container port on the host: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]
        /// (repeatable; needs --network bridge). A proxy relays what reaches the host port
        #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/udp]")]
        publish: Vec<String>,
        #[command(flatten)]
        registry: PullArgs,
        /// The image (as `stepctr images` shows it, or a reference to pull)
        image: String,
        /// The command and its arguments (default: the image's entrypoint and cmd)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Run one more command in a running container: join its namespaces and cgroup (setns)
    #[command(
        long_about = "Run one more command in a running container, as `docker exec` does. A container is a process in some namespaces and cgroups, so entering it is joining them: open the namespaces of its PID 1 (/proc/PID/ns/*), join its cgroup, setns into each (mount last), then exec the command, the same thing `nsenter -t PID -a` does. The command sees PID 1 in `ps`, the container's hostname and files; its stdout, stderr and exit code are relayed.",
        after_help = "Example:\n  stepctr run -d --name web localhost/stepctr-busybox sleep 100\n  stepctr exec web ps\n  stepctr exec -u nobody web id"
    )]
    Exec {
        /// Set an environment variable (repeatable)
        #[arg(short = 'e', long = "env", value_name = "KEY=VAL")]
        env: Vec<String>,
        /// Working directory inside the container (default: the image's)
        #[arg(
            short = 'w',
            long = "workdir",
            visible_alias = "cwd",
            value_name = "DIR"
        )]
        workdir: Option<String>,
        /// Run the command as USER[:GROUP] (names or ids, looked up in the container's
        /// /etc/passwd and /etc/group), instead of root
        #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
        user: Option<String>,
        /// Keep stdin open and relay it to the container (with -t: raw mode, every key goes in)
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Give the container a pseudo-terminal (`-it` for an interactive shell)
        #[arg(short = 't', long)]
        tty: bool,
        /// OCI runtime: the process to run, an OCI process JSON (args, env, cwd, user,
        /// capabilities, rlimits, terminal), as conmon passes it for `podman exec` (with it,
        /// --tty is ignored as runc ignores it: process.terminal decides)
        #[arg(long, value_name = "FILE", conflicts_with_all = ["env", "workdir", "user"])]
        process: Option<PathBuf>,
        /// OCI runtime: write the command's host pid there (decimal, no newline)
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// OCI runtime: return once the command runs; it is reparented to our caller's
        /// subreaper (conmon), which waits for it
        #[arg(short = 'd', long)]
        detach: bool,
        /// OCI runtime: with a terminal, send the pty's master over this unix socket
        #[arg(long, value_name = "SOCKET")]
        console_socket: Option<PathBuf>,
        /// The running container
        name: String,
        /// The command and its arguments (none with --process)
        #[arg(
            required_unless_present = "process",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        cmd: Vec<String>,
    },
    /// Send a signal to a running container's PID 1
    #[command(
        long_about = "Send a signal to a container's PID 1. A stage-built container gets SIGKILL \
by default (as `docker kill`); an OCI container (`stepctr create`) gets SIGTERM, as `runc kill ID` \
does. The signal may also come after the name, as the OCI runtime command line has it: \
`stepctr kill ID KILL`.\n\nPID 1 is special: the kernel drops a signal to the init of a PID \
namespace unless PID 1 handles it (SIGKILL from outside excepted)."
    )]
    Kill {
        /// The container
        name: String,
        /// The signal: a name (KILL, SIGTERM, usr1) or a number (as `runc kill ID SIGNAL`)
        #[arg(value_name = "SIGNAL", conflicts_with = "signal")]
        sig: Option<String>,
        /// The signal: a name (KILL, SIGTERM, usr1) or a number [default: KILL; TERM for an
        /// OCI container]
        #[arg(short, long)]
        signal: Option<String>,
        /// OCI container: signal every process in the container's cgroup, not only PID 1 (as
        /// `runc kill --all`)
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// OCI runtime: make a container from a bundle; its PID 1 waits for `start`
    #[command(
        long_about = "The OCI runtime's `create`, as podman, containerd and conmon call runc: \
the chain is docker → containerd → containerd-shim → runc → the container's process, and with \
podman: podman → conmon → runc. stepctr takes runc's place.\n\nThe bundle (a directory with \
config.json and the root filesystem it names) goes through the stages: load (the state \
directory; the rootfs is the bundle's), cgroup (linux.resources at linux.cgroupsPath), then \
PID 1 is forked into its new PID namespace and does the rest: it joins or makes the \
namespaces, mounts config.json's mounts inside the rootfs, makes the devices, pivot_roots, sets \
sysctls, masks paths, sets its rlimits, user and capabilities, and then blocks reading an exec \
fifo. create writes --pid-file and exits: PID 1 is reparented to the caller's subreaper (conmon \
or containerd-shim, which wait for it and keep its stdio: stepctr's own shim stays out of OCI \
mode). PID 1's stdio is create's, untouched. Quiet unless -v or --trace-file.",
        after_help = "Example:\n  stepctr bundle localhost/stepctr-busybox /tmp/b\n  stepctr create -b /tmp/b demo\n  stepctr state demo         (status: created)\n  stepctr start demo         (PID 1 execs)\n  stepctr kill demo KILL; stepctr delete demo"
    )]
    Create {
        /// The bundle directory (holding config.json)
        #[arg(short = 'b', long = "bundle", value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
        /// Write PID 1's host pid to this file
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// With process.terminal: send the pty's master over this unix socket (SCM_RIGHTS)
        #[arg(long, value_name = "SOCKET")]
        console_socket: Option<PathBuf>,
        /// Accepted for runc's sake: stepctr always uses pivot_root
        #[arg(long)]
        no_pivot: bool,
        /// Accepted for runc's sake: no session keyring is made
        #[arg(long)]
        no_new_keyring: bool,
        /// Pass N more fds (3, 4, ...) on to the container's process
        #[arg(long, value_name = "N", default_value_t = 0)]
        preserve_fds: u32,
        /// The container's id
        id: String,
    },
    /// OCI runtime: print a container's state as the runtime spec's JSON
    #[command(
        long_about = "Print a container's state as the OCI runtime spec's JSON: ociVersion, id, \
status (creating, created: PID 1 waits on the exec fifo; running: it exec'd; stopped: it \
ended), pid (PID 1's host pid), bundle, annotations. The status is read from the kernel each \
time (is PID 1 alive, is it still the same process), as runc does."
    )]
    State {
        /// The container's id
        id: String,
    },
    /// OCI runtime: remove a created or stopped container (--force: a running one too)
    Delete {
        /// Kill a running container first (SIGKILL)
        #[arg(short, long)]
        force: bool,
        /// The container's id
        id: String,
    },
    /// Stop a running container: SIGTERM to PID 1, then SIGKILL after a timeout
    Stop {
        /// The container
        name: String,
        /// Seconds to wait after SIGTERM before SIGKILL
        #[arg(
            short = 't',
            long = "time",
            visible_alias = "timeout",
            default_value_t = 10.0
        )]
        time: f64,
    },
    /// Attach to the terminal of a container started with -dit; Ctrl-P Ctrl-Q detaches
    Attach {
        /// The container
        name: String,
    },
    /// Print what a detached container wrote to stdout and stderr
    Logs {
        /// The container
        name: String,
    },
    /// Remove every container
    Reset,
    /// List containers: status (created, running, exited (CODE), OOMKilled), PID 1, shim, stages
    Ps {
        /// Print JSON: one object per container
        #[arg(long)]
        json: bool,
    },
    /// Show what a container uses, read from its cgroups: memory, CPU time, processes
    Stats {
        /// The container
        name: String,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// What this host allows and why: cgroups, overlayfs, user namespaces, seccomp, capabilities
    #[command(
        long_about = "What this host allows, and why. One line per check: ok, limited or \
missing, what was found, and what to do about it: the cgroup layout (pure v2, hybrid or v1), \
which controllers (memory, cpu, pids) are usable and whether cgroups are delegated to you, \
overlayfs (and in a user namespace), pivot_root, user namespaces (for root and for a normal \
user: Debian's and Ubuntu's switches), seccomp, whether stepctr runs inside a container or WSL, \
and the capabilities root lacks here. Exits 1 only when something stepctr cannot work without \
is missing.",
        after_help = "Example:\n  stepctr doctor\n  stepctr doctor --json | jq -r '.[] | select(.status != \"ok\") | .check'"
    )]
    Doctor {
        /// Print a JSON array of {check, status, found, advice} instead
        #[arg(long)]
        json: bool,
    },
    /// Guided lessons: list them, run one (its steps for real, then checks of what they did),
    /// or check your own attempt at a lesson's task (`stepctr lesson 3 check`)
    #[command(
        after_help = "For a class at a projector: `stepctr lesson 9 --pace step` runs each step's \
stepctr with STEPCTR_PACE=step, so it stops before every kernel call, shows the call on the \
terminal and waits for Enter (the step's narration follows when the step has ended)."
    )]
    Lesson {
        /// The lesson's number, or `status` (your progress); none: list the lessons
        #[arg(value_name = "N|status")]
        what: Option<String>,
        /// `check`: check your own attempt at the lesson's task
        #[arg(value_parser = ["check"])]
        action: Option<String>,
        /// Run straight through, answering every prompt with yes (also when stdin is not a terminal)
        #[arg(long)]
        yes: bool,
        /// Clean up what an earlier run left and start the lesson over
        #[arg(long)]
        restart: bool,
        /// With `status`: JSON, for a teacher
        #[arg(long)]
        json: bool,
    },
    /// Scripted comparisons for a class: chroot against namespaces, the chroot breakout, where
    /// the start-up time goes
    #[command(subcommand)]
    Demo(DemoCommand),
    /// List the images in the local store
    #[command(
        long_about = "List the images in the local store, $STEPCTR_ROOT/images: a standard OCI \
image layout, so `skopeo inspect oci:$STEPCTR_ROOT/images:REF` and `umoci unpack --image \
$STEPCTR_ROOT/images:REF` read it too.\n\nDIGEST is the sha256 of the image's manifest (the \
file blobs/sha256/<hex>); SIZE counts the manifest, config and compressed layer blobs (layers \
shared with other images are counted for each)."
    )]
    Images {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remove images from the store, and the blobs and unpacked layers nothing else uses
    #[command(
        long_about = "Remove images from the store: each reference is dropped from index.json, \
then every blob that no remaining image points to is deleted (mark and sweep: blobs shared with \
other images stay), and so is every unpacked layer under $STEPCTR_ROOT/layers that no \
remaining image and no container uses. An image a container still uses is refused unless \
--force.",
        after_help = "Example:\n  stepctr images\n  stepctr rmi localhost/everything:latest"
    )]
    Rmi {
        /// The images, as `stepctr images` shows them (or as you pulled them)
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
        /// Remove images that containers still use (their unpacked layers stay until `stepctr rm`)
        #[arg(short, long)]
        force: bool,
    },
    /// Show an image's manifest and config: entrypoint, cmd, env, layers and history
    #[command(
        long_about = "Show what the store knows about an image: the manifest (which config and \
which layer blobs, by digest), and the config (how to run it: entrypoint, cmd, env, working \
directory, user; each layer's diff_id, the sha256 of its uncompressed tar; the history of how \
the layers were made). --json prints the manifest and config as stored."
    )]
    Inspect {
        /// The image, as `stepctr images` shows it (or as you pulled it), or a container's name
        image: String,
        /// Print JSON: the manifest and config as stored, plus a summary of the layers
        #[arg(long)]
        json: bool,
    },
    /// Write a default config.json into a bundle directory, as `runc spec` does
    #[command(
        long_about = "Write a default config.json, as `runc spec` does (only the hostname \
differs). A bundle is what an OCI runtime runs: a directory holding config.json (the runtime \
spec: the process, its user, capabilities and rlimits, the namespaces, mounts, cgroup limits, \
masked paths, seccomp) and the root filesystem it names (root.path, here `rootfs`). containerd \
and podman make one from an image, then call `runc create --bundle DIR ID`.\n\nThe default: \
`sh` on a terminal as root, three capabilities (AUDIT_WRITE, KILL, NET_BIND_SERVICE), no new \
privileges, 1024 open files, a read-only root, new pid, network, ipc, uts and mount \
namespaces. An existing config.json is never overwritten.",
        after_help = "Example:\n  mkdir -p b/rootfs && tar -C b/rootfs -xf rootfs.tar\n  stepctr spec -b b\n  runc run -b b demo      (or: stepctr create -b b demo; stepctr start demo)\n  stepctr bundle localhost/stepctr-busybox b2   (rootfs and config.json from an image)"
    )]
    Spec {
        /// The bundle directory to write config.json into
        #[arg(short = 'b', long = "bundle", value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
        /// A spec for a user without root, as `runc spec --rootless`: a user namespace mapping
        /// your uid and gid to root, no network namespace, no cgroup limits
        #[arg(long)]
        rootless: bool,
    },
    /// Make an OCI runtime bundle from an image: DIR/rootfs and DIR/config.json
    #[command(
        long_about = "Make an OCI runtime bundle from an image, as containerd and podman do before \
they call the runtime: a runtime knows nothing of images. DIR/rootfs gets the image's layers \
applied in order (whiteouts deleting, every path resolved inside the tree, as `load --flatten`), \
DIR/config.json the default spec (`stepctr spec`) with the image's config in it: args = \
entrypoint + cmd, env, cwd = the working directory, the user (names looked up in the rootfs's \
/etc/passwd and /etc/group), a hostname from the image's name, labels and facts as \
org.opencontainers.image.* annotations; and docker's capabilities and masked paths, as \
`stepctr run` gives. No terminal. IMAGE is pulled first if the store lacks it. DIR must not \
exist or be empty.",
        after_help = "Example:\n  stepctr bundle localhost/stepctr-busybox /tmp/b\n  runc run -b /tmp/b demo\n  stepctr create -b /tmp/b demo && stepctr start demo"
    )]
    Bundle {
        /// The image (as `stepctr images` shows it, or a reference to pull)
        image: String,
        /// The bundle directory (new, or empty)
        dir: PathBuf,
        #[command(flatten)]
        registry: PullArgs,
    },
    /// Print what stepctr supports of the OCI runtime spec, as JSON (runtime-spec features.md)
    #[command(
        long_about = "Print what stepctr supports of the OCI runtime spec, as the JSON that the \
spec's features.md describes and `runc features` prints: the spec versions it reads, the \
hooks it runs, the mount options, namespaces, capabilities, cgroup versions, seccomp actions, \
operators and architectures, AppArmor and SELinux (not supported). podman and containerd ask \
a runtime this before relying on a feature; a config.json asking for anything else the spec \
defines is refused with an error naming the field, never silently ignored (properties the spec \
does not define are ignored, as it says)."
    )]
    Features,
}

/// `stepctr demo ...`: the same probes in different setups, side by side.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Run the same probes under plain chroot and inside a container's namespaces; a table of
    /// what each one lets through
    #[command(
        long_about = "Run the same probes twice: once in a process that is only chroot()ed into \
the image (as jails were built before namespaces), once inside a container made by the six \
stages (all namespaces, its own root by pivot_root). Both probes keep every capability of root, \
so what stops them is the namespaces alone, not a missing privilege.\n\nThe probes: can it read \
a file of the host (through /proc/1/root), see and kill a host process (a `sleep` the demo \
starts), which PID does it get, does its hostname change reach the host, does its mount show \
on the host, which network interfaces does it see, does the classic chroot breakout reach the \
host's files, and are its /proc/self/ns links the host's. Whatever a probe changes on the host \
(the hostname, a mount) is put back at once.",
        after_help = "Examples:\n  sudo stepctr demo isolation\n  sudo stepctr demo isolation --mode chroot\n  sudo stepctr -q demo isolation --json | jq '.probes[] | select(.chroot.isolated != .namespaces.isolated) | .probe'"
    )]
    Isolation {
        /// Which setups to probe
        #[arg(long, value_enum, default_value = "both")]
        mode: DemoMode,
        /// Print the verdicts as JSON on stdout instead of a table
        #[arg(long)]
        json: bool,
        /// The image (default: the default busybox image)
        image: Option<String>,
    },
    /// The classic chroot escape, then the same attempt after pivot_root in a mount namespace
    #[command(
        long_about = "The classic chroot escape, for real: a process chroot()ed into the image \
makes a directory, chroot()s into it (its working directory stays outside its new root), climbs \
with chdir(\"..\") and chroot(\".\")s where it ends: the host's /. Then the same attempt in a \
root made by pivot_root in a new mount namespace, where the old root is unmounted and \"..\" of \
/ is / itself.\n\nThe demo first unshares a mount namespace of its own and refuses to go on \
unless it is in one (a throwaway namespace: nothing it mounts reaches the host). The escape \
only reads: it lists the host's / and reads /etc/hostname."
    )]
    Breakout {
        /// The image (default: the default busybox image)
        image: Option<String>,
    },
    /// Start containers N times and show the median time of each stage (and a VM boot to
    /// compare, with --vm)
    #[command(
        long_about = "Start N containers of the default image one after the other, each exactly \
as `stepctr -q all --rm --timings=json -- true` (this binary, run as a child), and show per stage \
the median, min and max in milliseconds: stepctr (main() to the first stage), pull, load, cgroup, \
ns, fs, start (until the container's execve), run, rm, total. The default image is pulled first, \
and every container is removed.\n\nWith --vm, a VM is booted beside them, for contrast: \
qemu-system-x86_64 -accel tcg (software emulation), 256 MiB, no network, a kernel image \
($STEPCTR_VM_KERNEL, else /boot/vmlinuz-$(uname -r), else /boot/vmlinuz) and an initramfs built \
in a temp dir (a static busybox and an /init that prints a line and powers off). It is timed \
from spawning qemu to that line on the serial console (boot to the first user-space program), \
and until qemu exits; qemu is killed after 60 s. `stepctr doctor` says whether this host can \
(check vm_boot).",
        after_help = "Examples:\n  stepctr demo startup -n 20\n  stepctr demo startup -n 5 --vm\n  stepctr demo startup -n 3 --json | jq .stages.total"
    )]
    Startup {
        /// How many containers to start (1 to 1000)
        #[arg(short = 'n', long, default_value_t = 10)]
        runs: u32,
        /// Print one JSON object on stdout instead of a table: {runs, stages: {NAME: {median_ms,
        /// min_ms, max_ms}}, vm}
        #[arg(long)]
        json: bool,
        /// Also boot a VM under qemu (software emulation) and compare
        #[arg(long)]
        vm: bool,
    },
}

/// The setups `demo isolation` probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoMode {
    /// Only chroot(2) into the image, in the host's namespaces
    Chroot,
    /// A container: every namespace, pivot_root
    Namespaces,
    /// Both, side by side
    Both,
}

/// How to talk to a registry (`pull`).
#[derive(Debug, Args, Clone, Default)]
pub struct PullArgs {
    /// The platform to pick from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// User name for the registry (default: what `docker login` stored)
    #[arg(long)]
    pub username: Option<String>,
    /// Password or token for the registry (visible in `ps`: prefer --password-stdin)
    #[arg(long, conflicts_with = "password_stdin", requires = "username")]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Speak plain HTTP to this registry even though it is not on loopback
    #[arg(long)]
    pub insecure: bool,
}

/// How the container is hardened (issue 5): capabilities, seccomp, masked paths.
#[derive(Debug, Args, Clone, Default)]
pub struct SecurityArgs {
    /// Give the container every capability, no seccomp filter, no masked paths (for lessons
    /// that show what the walls prevent; never for untrusted code)
    #[arg(long)]
    pub privileged: bool,
    /// Add a capability to the default set, e.g. NET_ADMIN (repeatable; ALL for all)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set, e.g. CHOWN (repeatable; ALL for all)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined, systempaths=unconfined, no-new-privileges[=true|false] (repeatable)
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
}

/// What stage `ns` makes (for `ns`, `all` and `run`): a user namespace, the network.
#[derive(Debug, Args, Clone)]
pub struct NsArgs {
    #[arg(long, value_name = "BASE:COUNT", num_args = 0..=1, require_equals = true,
          default_missing_value = "auto", help = USERNS_HELP, long_help = USERNS_LONG_HELP)]
    pub userns: Option<String>,
    /// The container's network: none (only lo), host (the host's interfaces), bridge (a
    /// veth to the stepctr0 bridge, an address, a default route)
    #[arg(long, value_enum, default_value = "none", value_name = "MODE")]
    pub network: crate::net::link::Mode,
    /// The bridge's subnet, when --network bridge makes the bridge
    #[arg(long, value_name = "CIDR", default_value = "10.88.0.0/16")]
    pub subnet: String,
}

#[derive(Debug, Args, Clone, Default)]
pub struct LimitArgs {
    /// Memory limit, e.g. 256M or 1G
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Maximum number of processes in the container
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u64>,
    /// CPUs the container may use, e.g. 0.5 (a CFS quota of 50 ms per 100 ms period)
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<String>,
}

/// `--timings[=FORMAT]` of `all` and `run`: how to print where the time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimingsFormat {
    /// A table: one row per stage, milliseconds and share of the total
    Table,
    /// One line of JSON: {"stepctr_ms":...,"pull_ms":...,...,"total_ms":...}
    Json,
}

const USERNS_HELP: &str =
    "As root: a user namespace mapping ids 0..COUNT inside to BASE.. outside (default: auto)";
const USERNS_LONG_HELP: &str =
    "As root: give the container a user namespace. Ids 0..COUNT inside are \
BASE..BASE+COUNT outside (uids and gids), so root inside is an unprivileged uid on the host; the \
image's layers are mounted idmapped (their owners shifted by BASE, nothing copied). `auto` (or no \
value) takes root's line of /etc/subuid, else 100000:65536. Without root every container gets a \
user namespace anyway, mapping only your own uid.";

const TIMINGS_HELP: &str =
    "After the container ends, print where the time went, stage by stage, to stderr (=json: one JSON line)";

const TIMINGS_LONG_HELP: &str = "After the container has ended, print where the time went to \
stderr (stdout stays the container's), even with -q: one row per stage with milliseconds and \
its share of the total, every number a wall-clock measurement (CLOCK_MONOTONIC), not an \
estimate.\n\n  stepctr  stepctr's own start: from main() to the first stage (before main(), the \
kernel's execve and the dynamic loader are left out: /proc/self/stat's starttime counts in \
10 ms clock ticks, too coarse to be honest here)\n  pull ... fs  the stages\n  start    from \
the start stage until PID 1's execve succeeded (the shim sees that moment and tells stepctr)\n  \
run      PID 1's life: from its execve until stepctr has seen it end and recorded its exit\n  \
rm       removing the container (--rm)\n\n--timings=json prints the same as one line of JSON \
for scripts, {\"stepctr_ms\":..., \"pull_ms\":..., ..., \"rm_ms\":..., \"total_ms\":...}, with \
null for what did not happen (run when detached, rm without --rm): `stepctr -q all --rm \
--timings=json -- /bin/true 2>&1 >/dev/null | tail -n 1`. Without --timings, `all` ends with \
a one-line `# timings:` note instead (not with -q).";
