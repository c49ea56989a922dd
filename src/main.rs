//! stepctr: build a container stage by stage, for real, and watch every kernel call.

use anyhow::{bail, Context, Result};
use clap::Parser;
use cli::{Cli, Command, LimitArgs};
use kernel::linux::Linux;
use kernel::narrate::{Level, Narrate};
use kernel::Kernel;
use stage::cgroup::Limits;
use state::{Container, ContainerName, Paths};
use std::io::IsTerminal;
use std::io::Write as _;
use std::os::fd::IntoRawFd;
use std::path::Path;
use stepctr::{cli, image, kernel, pipeline, remove, stage, state};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn main() {
    // `--timings`: stepctr's own start counts from here (see `pipeline::Timings`).
    let started = std::time::Instant::now();
    let cli = Cli::parse();
    let log = cli
        .log
        .clone()
        .map(|f| (f, cli.log_format.as_deref() == Some("json")));
    match run(cli, started) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if let Some((file, json)) = &log {
                stepctr::oci::lifecycle::log_error(file, *json, &format!("{e:#}"));
            }
            eprintln!("stepctr: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The two roots; `--root DIR` (an OCI runtime's state directory) is the run directory.
fn paths_of(cli: &Cli) -> Paths {
    let mut paths = Paths::from_env();
    if let Some(root) = &cli.root {
        paths.run = root.clone();
    }
    paths
}

fn narrator(cli: &Cli) -> Result<Narrate<Linux>> {
    // `run` and `exec` are quiet like docker's, unless narration is asked for; so is the OCI
    // runtime's command line (podman and containerd read its stdout and stderr).
    let oci = |name: &str| stepctr::oci::lifecycle::is_oci(&paths_of(cli), name);
    let quiet_run = (matches!(
        cli.command,
        Command::Run { .. }
            | Command::Exec { .. }
            | Command::Create { .. }
            | Command::State { .. }
            | Command::Delete { .. }
    ) || matches!(&cli.command, Command::Start { name, .. } | Command::Kill { name, .. } if oci(name)))
        && !(cli.verbose || cli.verbose_short || cli.trace_file.is_some());
    let level = if cli.quiet || quiet_run {
        Level::Quiet
    } else if cli.verbose || cli.verbose_short {
        Level::Verbose
    } else {
        Level::Normal
    };
    let (fd, tty) = match &cli.trace_file {
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("open trace file {}", path.display()))?;
            (f.into_raw_fd(), false)
        }
        None => (2, std::io::stderr().is_terminal()),
    };
    let color = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    colored::control::set_override(color);
    let narrate = Narrate::new(Linux, level, color, fd);
    Ok(match cli.pace {
        Some(cli::Pace::Step) => narrate.paced(),
        None => narrate,
    })
}

fn limits(args: &LimitArgs) -> Result<Limits> {
    Ok(Limits {
        memory: args
            .memory
            .as_deref()
            .map(stage::cgroup::parse_size)
            .transpose()?,
        pids: match args.pids_limit {
            Some(0) => bail!("--pids-limit must be at least 1"),
            p => p,
        },
        cpu_quota: args
            .cpus
            .as_deref()
            .map(stage::cgroup::parse_cpus)
            .transpose()?,
    })
}

fn pull_options(args: &cli::PullArgs, quiet: bool) -> Result<image::registry::PullOptions> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("read the password from standard input")?;
        Some(line.trim_end_matches(['\n', '\r']).to_string())
    } else {
        args.password.clone()
    };
    Ok(image::registry::PullOptions {
        platform: args.platform.clone(),
        username: args.username.clone(),
        password,
        insecure: args.insecure,
        progress: !quiet,
    })
}

/// `-t` with `-d`: no `attach` command yet, so nobody could ever use that terminal.
/// `stepctr attach NAME`: the terminal of a container started with `-dit`; returns 0 on
/// Ctrl-P Ctrl-Q, PID 1's exit code (when the shim has recorded it) once the container ends.
fn attach(k: &dyn Kernel, paths: &Paths, name: &str) -> Result<i32> {
    let name = ContainerName::parse(name)?;
    let mut c = Container::open(paths, &name)?;
    // Attached, other commands (`ps`, `stop`, the shim recording the exit) need the lock.
    c.unlock();
    if stepctr::lifecycle::running_pid1(&c).is_none() {
        bail!(
            "{name} is not running: nothing to attach to (`stepctr logs {name}` shows its output)"
        );
    }
    let socket = c.path(stepctr::tty::ATTACH_SOCKET);
    if !socket.exists() {
        bail!("{name} has no terminal to attach to: attach needs a container started with -dit (`stepctr run -dit ...`); `stepctr logs {name}` shows its output");
    }
    match stepctr::tty::attach_client(k, &socket, name.as_str())? {
        stepctr::tty::Attached::Detached => {
            k.note(&format!(
                "detached from {name}: it keeps running (`stepctr attach {name}` again, `stepctr logs {name}`, `stepctr stop {name}`)"
            ));
            Ok(0)
        }
        stepctr::tty::Attached::Ended => {
            // The shim records PID 1's exit code just after reaping it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            loop {
                let code = Container::open(paths, &name).ok().and_then(|mut c| {
                    c.unlock();
                    c.state.exit_code
                });
                if let Some(code) = code {
                    k.note(&format!(
                        "PID 1 ended (exit code {code}): {name} has stopped; `stepctr rm {name}` removes it"
                    ));
                    return Ok(code);
                }
                if std::time::Instant::now() > deadline {
                    k.note(&format!(
                        "{name}'s terminal closed: the container has stopped"
                    ));
                    return Ok(0);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// `start` and `kill` of a container that does not exist: in both the OCI runtime's wording
/// and the stages'.
fn missing(paths: &Paths, name: &str) -> Result<()> {
    if let Ok(n) = ContainerName::parse(name) {
        if !paths.container(&n).is_dir() {
            bail!("container {name} does not exist (no container named {name}: create one with `stepctr load {name}`, or from a bundle with `stepctr create`)");
        }
    }
    Ok(())
}

fn need_root(what: &str) -> Result<()> {
    if !kernel::host::is_root() {
        bail!("`stepctr {what}` needs root: rootless mode does not cover it yet (it covers pull, load, cgroup, ns, fs, start, all, run, kill, stop, logs, ps, rm): run it with sudo");
    }
    Ok(())
}

/// `-p SPEC...`.
fn publish_of(specs: &[String]) -> Result<Vec<stepctr::net::proxy::Publish>> {
    specs
        .iter()
        .map(|s| stepctr::net::proxy::Publish::parse(s))
        .collect()
}

/// `--network MODE --subnet CIDR` of `all` and `run`: with `-p` and no network asked for, the
/// bridge (as docker's default network is).
fn network_for(
    mode: stepctr::net::link::Mode,
    subnet: &str,
    publish: &[String],
) -> Result<stage::ns::Network> {
    let mut net = network_of(mode, subnet)?;
    if !publish.is_empty() && mode == stepctr::net::link::Mode::None {
        net.mode = stepctr::net::link::Mode::Bridge;
    }
    Ok(net)
}

/// `--network MODE --subnet CIDR`.
fn network_of(mode: stepctr::net::link::Mode, subnet: &str) -> Result<stage::ns::Network> {
    Ok(stage::ns::Network {
        mode,
        subnet: stepctr::net::link::Subnet::parse(subnet)?,
    })
}

/// `--userns[=BASE:COUNT]`.
fn userns_range(spec: Option<&str>) -> Result<Option<stepctr::userns::UserNs>> {
    spec.map(stepctr::userns::UserNs::parse_range).transpose()
}

/// `--name`, or a fresh name.
fn name_or_fresh(name: Option<&str>, paths: &Paths) -> Result<ContainerName> {
    match name {
        Some(n) => ContainerName::parse(n),
        None => fresh_name(paths),
    }
}

fn fresh_name(paths: &Paths) -> Result<ContainerName> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        ^ (std::process::id() as u128) << 32;
    for i in 0..64u128 {
        let n = ((seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) + i * 7919) & 0xff_ffff;
        let name = ContainerName::parse(&format!("ctr-{n:06x}"))?;
        if !paths.container(&name).exists() {
            return Ok(name);
        }
    }
    bail!("could not find a free container name: give one with --name")
}

fn run(cli: Cli, started: std::time::Instant) -> Result<i32> {
    let paths = paths_of(&cli);
    let k = narrator(&cli)?;
    let k: &dyn Kernel = &k;
    let cgroup_root = Path::new(CGROUP_ROOT);
    let open =
        |name: &str| -> Result<Container> { Container::open(&paths, &ContainerName::parse(name)?) };
    match &cli.command {
        Command::Pull { image, registry } => {
            let opts = pull_options(registry, cli.quiet)?;
            stage::pull::run_with(
                k,
                &paths,
                image.as_deref().unwrap_or(image::DEFAULT_IMAGE),
                &opts,
            )?;
        }
        Command::Load {
            name,
            image,
            flatten,
        } => {
            let name = ContainerName::parse(name)?;
            stage::load::run_with(
                k,
                &paths,
                &name,
                image.as_deref().unwrap_or(image::DEFAULT_IMAGE),
                *flatten,
            )?;
        }
        Command::Cgroup { name, limits: l } => {
            let l = limits(l)?;
            stage::cgroup::run(k, &mut open(name)?, cgroup_root, l)?;
        }
        Command::Ns { name, ns } => {
            let userns = userns_range(ns.userns.as_deref())?;
            let net = network_of(ns.network, &ns.subnet)?;
            stage::ns::run(k, &mut open(name)?, userns, net)?;
        }
        Command::Fs { name, volumes, dns } => {
            let volumes = stepctr::volume::parse_all(volumes)?;
            stage::fs::run(k, &mut open(name)?, &volumes, dns)?;
        }
        Command::Start {
            name,
            cmd,
            detach,
            user,
            interactive,
            tty,
            security,
            publish,
        } => {
            missing(&paths, name)?;
            if stepctr::oci::lifecycle::is_oci(&paths, name) {
                if !cmd.is_empty() {
                    bail!("container {name} was made by `stepctr create`: its command is config.json's process.args (`stepctr start {name}`, no `--`)");
                }
                stepctr::oci::lifecycle::start(k, &paths, name)?;
                return Ok(0);
            }
            let mut c = open(name)?;
            let o = stage::start::Options {
                detach: *detach,
                user: user.clone(),
                tty: *tty,
                interactive: *interactive,
                security: stepctr::security::Profile::from_args(security)?,
                publish: publish_of(publish)?,
                ..Default::default()
            };
            let code = stage::start::run_with(k, &mut c, cmd, &o)?;
            if !*detach {
                stepctr::stats::record_exit(k, &mut c, code)?;
            }
            return Ok(code);
        }
        Command::All {
            image,
            name,
            registry,
            limits: l,
            volumes,
            rm,
            detach,
            user,
            interactive,
            tty,
            timings,
            security,
            publish,
            ns,
            dns,
            cmd,
        } => {
            let l = limits(l)?;
            let volumes = stepctr::volume::parse_all(volumes)?;
            let pull = pull_options(registry, cli.quiet)?;
            let name = name_or_fresh(name.as_deref(), &paths)?;
            let opts = pipeline::AllOptions {
                image: image.as_deref().unwrap_or(image::DEFAULT_IMAGE),
                pull,
                name: &name,
                limits: l,
                cmd,
                volumes: &volumes,
                cgroup_root,
                rm: *rm,
                userns: userns_range(ns.userns.as_deref())?,
                network: network_for(ns.network, &ns.subnet, publish)?,
                dns,
                timings: timings.map(|format| pipeline::Timings { format, started }),
                start: stage::start::Options {
                    detach: *detach,
                    user: user.clone(),
                    tty: *tty,
                    interactive: *interactive,
                    security: stepctr::security::Profile::from_args(security)?,
                    publish: publish_of(publish)?,
                    ..Default::default()
                },
            };
            return pipeline::all(k, &paths, &opts);
        }
        Command::Run {
            detach,
            rm,
            name,
            env,
            workdir,
            user,
            hostname,
            timings,
            volumes,
            limits: l,
            registry,
            image,
            cmd,
            interactive,
            tty,
            security,
            ns,
            dns,
            publish,
        } => {
            let l = limits(l)?;
            let volumes = stepctr::volume::parse_all(volumes)?;
            if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
                bail!("-e {bad:?}: give KEY=VALUE");
            }
            let pull = pull_options(registry, true)?;
            let name = name_or_fresh(name.as_deref(), &paths)?;
            let opts = pipeline::AllOptions {
                image,
                pull,
                name: &name,
                limits: l,
                cmd,
                volumes: &volumes,
                cgroup_root,
                rm: *rm,
                userns: userns_range(ns.userns.as_deref())?,
                network: network_for(ns.network, &ns.subnet, publish)?,
                dns,
                timings: timings.map(|format| pipeline::Timings { format, started }),
                start: stage::start::Options {
                    detach: *detach,
                    env: env.clone(),
                    workdir: workdir.clone(),
                    hostname: hostname.clone(),
                    remove_when_done: false,
                    user: user.clone(),
                    tty: *tty,
                    interactive: *interactive,
                    security: stepctr::security::Profile::from_args(security)?,
                    publish: publish_of(publish)?,
                },
            };
            let code = pipeline::all(k, &paths, &opts)?;
            if *detach {
                // Like docker, print the new container's name (a closed stdout is not an error).
                let _ = writeln!(std::io::stdout(), "{name}");
            }
            return Ok(code);
        }
        Command::Exec {
            env,
            workdir,
            user,
            interactive,
            tty,
            process,
            pid_file,
            detach,
            console_socket,
            name,
            cmd,
        } => {
            if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
                bail!("-e {bad:?}: give KEY=VALUE");
            }
            let o = stepctr::exec::Options {
                env: env.clone(),
                workdir: workdir.clone(),
                user: user.clone(),
                tty: *tty,
                interactive: *interactive,
                process: match process {
                    Some(f) => Some(stepctr::oci::config::load_process(f)?),
                    None => None,
                },
                detach: *detach,
                pid_file: pid_file.clone(),
                console_socket: console_socket.clone(),
            };
            return stepctr::exec::exec(k, &mut open(name)?, cmd, &o);
        }
        Command::Kill {
            name,
            sig,
            signal,
            all,
        } => {
            missing(&paths, name)?;
            let given = sig.as_deref().or(signal.as_deref());
            if stepctr::oci::lifecycle::is_oci(&paths, name) {
                let sig = stepctr::lifecycle::parse_signal(given.unwrap_or("TERM"))?;
                stepctr::oci::lifecycle::kill(k, &paths, name, sig, *all)?;
            } else {
                if *all {
                    bail!("kill --all is for OCI containers (made by `stepctr create`): `stepctr rm -f {name}` kills everything of a stage-built one");
                }
                let sig = stepctr::lifecycle::parse_signal(given.unwrap_or("KILL"))?;
                stepctr::lifecycle::kill(k, &mut open(name)?, sig)?;
            }
        }
        Command::Create {
            bundle,
            pid_file,
            console_socket,
            no_pivot,
            no_new_keyring,
            preserve_fds,
            id,
        } => {
            need_root("create")?;
            let o = stepctr::oci::create::Options {
                bundle: bundle.clone(),
                pid_file: pid_file.clone(),
                console_socket: console_socket.clone(),
                no_pivot: *no_pivot,
                no_new_keyring: *no_new_keyring,
                preserve_fds: *preserve_fds,
                systemd_cgroup: cli.systemd_cgroup,
            };
            stepctr::oci::create::create(k, &paths, id, &o, cgroup_root)?;
        }
        Command::State { id } => {
            let json = stepctr::oci::lifecycle::state(&paths, id)?;
            let _ = writeln!(std::io::stdout(), "{json}");
        }
        Command::Delete { force, id } => stepctr::oci::lifecycle::delete(k, &paths, id, *force)?,
        Command::Stop { name, time } => {
            if !time.is_finite() || *time < 0.0 {
                bail!("--time must be a number of seconds, 0 or more");
            }
            let t = std::time::Duration::from_secs_f64(*time);
            stepctr::lifecycle::stop(k, &mut open(name)?, t)?;
            let _ = writeln!(std::io::stdout(), "{name}");
        }
        Command::Attach { name } => {
            need_root("attach")?;
            return attach(k, &paths, name);
        }
        Command::Logs { name } => stepctr::lifecycle::logs(&open(name)?)?,
        Command::Rm { names, force } => {
            for n in names {
                remove::remove_with(k, &paths, &ContainerName::parse(n)?, *force)?;
            }
        }
        Command::Reset => {
            let n = remove::reset(k, &paths)?;
            k.note(&format!("removed {n} container(s)"));
        }
        Command::Images { json } => image::commands::images(&paths, *json)?,
        Command::Rmi { images, force } => {
            image::commands::rmi(k, &paths, images, *force)?;
        }
        Command::Inspect { image, json } => match ContainerName::parse(image) {
            // A container of that name: its state (an image of the same name: use its tag).
            Ok(n) if paths.container(&n).is_dir() => stepctr::ps::inspect(&paths, &n, *json)?,
            _ => image::commands::inspect(&paths, image, *json)?,
        },
        Command::Spec { bundle, rootless } => stepctr::oci::spec::command(bundle, *rootless)?,
        Command::Bundle {
            image,
            dir,
            registry,
        } => {
            let pull = pull_options(registry, cli.quiet)?;
            stepctr::oci::bundle::command(k, &paths, image, dir, &pull)?;
        }
        Command::Features => stepctr::oci::spec::features_command()?,
        Command::Stats { name, json } => stepctr::stats::command(&open(name)?, *json)?,
        Command::Ps { json } => stepctr::ps::command(&paths, *json)?,
        Command::Doctor { json } => return stepctr::doctor::command(*json),
        Command::Demo(d) => {
            return stepctr::demo::command(k, &paths, d, cli.verbose || cli.verbose_short)
        }
        Command::Lesson {
            what,
            action,
            yes,
            restart,
            json,
        } => {
            use stepctr::lesson::run as lesson;
            let failed = match (what.as_deref(), action.as_deref()) {
                (None, _) => {
                    lesson::list()?;
                    0
                }
                (Some("status"), _) => {
                    lesson::status(*json)?;
                    0
                }
                (Some(n), action) => {
                    let n: u32 = n.parse().map_err(|_| {
                        anyhow::anyhow!("`stepctr lesson {n}`: give a lesson's number, or `status`")
                    })?;
                    match action {
                        Some(_) => lesson::check(n)?,
                        None => lesson::run(
                            n,
                            &lesson::Options {
                                yes: *yes,
                                restart: *restart,
                                pace: cli.pace.is_some(),
                            },
                        )?,
                    }
                }
            };
            return Ok(if failed == 0 { 0 } else { 1 });
        }
    }
    Ok(0)
}
