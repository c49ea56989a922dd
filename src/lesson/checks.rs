//! The checks a lesson makes of the machine's real state (`check` and `task` blocks): each
//! kind is a function of what the kernel shows (/proc, /sys, the filesystem), never of what
//! stepctr says about itself.

use super::parse::Check;
use std::path::Path;

/// Does `c` hold now? Ok(()) or the reason it does not (the hint is the caller's).
pub fn holds(c: &Check) -> Result<(), String> {
    let arg = c.arg.as_str();
    match c.kind.as_str() {
        "exists" => yes(Path::new(arg).exists(), || format!("{arg} does not exist")),
        "gone" => yes(!Path::new(arg).exists(), || format!("{arg} still exists")),
        "mount" => yes(mounted(arg), || format!("no mount mentions {arg:?}")),
        "no-mount" => yes(!mounted(arg), || format!("a mount still mentions {arg:?}")),
        "cgroup" => yes(cgroup_named(arg), || format!("no cgroup named {arg}")),
        "no-cgroup" => yes(!cgroup_named(arg), || {
            format!("a cgroup named {arg} is left")
        }),
        "process" => yes(!processes(arg).is_empty(), || {
            format!("no process mentions {arg:?}")
        }),
        "no-process" => {
            let p = processes(arg);
            yes(p.is_empty(), || {
                format!("processes still mention {arg:?}: {p:?}")
            })
        }
        "file-contains" => {
            let (file, text) = arg.split_once(' ').unwrap_or((arg, ""));
            let got = std::fs::read_to_string(file).unwrap_or_default();
            yes(got.contains(text), || {
                format!("{file} does not contain {text:?}")
            })
        }
        other => Err(format!("unknown check {other:?}")),
    }
}

fn yes(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn mounted(text: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(text))
}

fn cgroup_named(name: &str) -> bool {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join("stepctr").join(name)];
    if let Ok(rd) = std::fs::read_dir(base) {
        dirs.extend(rd.flatten().map(|e| e.path().join("stepctr").join(name)));
    }
    dirs.iter().any(|d| d.is_dir())
}

/// Processes (other than this one) whose command line mentions `needle`.
fn processes(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, arg: &str) -> Check {
        Check {
            kind: kind.into(),
            arg: arg.into(),
            hint: None,
        }
    }

    #[test]
    fn checks_read_the_real_state() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "hello world").unwrap();
        let p = f.to_string_lossy().into_owned();
        assert!(holds(&check("exists", &p)).is_ok());
        assert!(holds(&check("gone", &p))
            .unwrap_err()
            .contains("still exists"));
        assert!(holds(&check("file-contains", &format!("{p} world"))).is_ok());
        assert!(holds(&check("file-contains", &format!("{p} moon"))).is_err());
        assert!(holds(&check("mount", " / ")).is_ok());
        assert!(holds(&check("no-mount", "no-such-mount-anywhere")).is_ok());
        assert!(holds(&check("no-process", "no-such-process-anywhere-xyz")).is_ok());
        assert!(holds(&check("smell", "roses")).is_err());
    }
}
