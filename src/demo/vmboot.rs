//! `demo startup --vm`: boot a real VM, for contrast with a container start.
//!
//! The VM is as small as a VM gets: qemu (software emulation, `-accel tcg`: KVM cannot run
//! stock kernels on every host), 256 MiB, no network, no disk, a stock kernel and an initramfs
//! built here: a cpio archive (the "newc" format, written below) holding a statically linked
//! busybox, /dev/console and an /init script that prints a marker line and powers off. So the
//! VM does what every boot does (firmware, kernel decompression, memory, devices, the
//! initramfs unpacked) and nothing more: no init system, no services.
//!
//! Two times are measured, from spawning qemu: until the marker line reaches the serial console
//! ("boot to the first user-space program"), and until qemu exits.
//!
//! qemu is started with std::process::Command, not through the kernel seam: it is not a call
//! stepctr makes to build a container, and its own thousands of calls are not ours to narrate.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The line /init prints on the serial console once user space runs.
pub const MARKER: &str = "STEPCTR-VM-USERSPACE";

/// How long the VM may take, from spawn to exit.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What one boot measured.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Spawning qemu → the marker line on the serial console.
    pub boot: Duration,
    /// Spawning qemu → qemu exited (after `poweroff -f`).
    pub total: Duration,
    /// The guest's own /proc/uptime when /init ran (its kernel's view: no firmware, no qemu).
    pub guest_uptime_s: Option<f64>,
    pub kernel: PathBuf,
    pub qemu: PathBuf,
}

/// qemu-system-x86_64 on $PATH.
pub fn find_qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The kernel image to boot: $STEPCTR_VM_KERNEL, else /boot/vmlinuz-$(uname -r), else
/// /boot/vmlinuz. The error says what was looked for.
pub fn find_kernel() -> std::result::Result<PathBuf, String> {
    if let Some(k) = std::env::var_os("STEPCTR_VM_KERNEL").filter(|v| !v.is_empty()) {
        let k = PathBuf::from(k);
        return if k.is_file() {
            Ok(k)
        } else {
            Err(format!(
                "$STEPCTR_VM_KERNEL is {}, which is not a file",
                k.display()
            ))
        };
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let versioned = PathBuf::from(format!("/boot/vmlinuz-{}", release.trim()));
    let plain = PathBuf::from("/boot/vmlinuz");
    if versioned.is_file() {
        return Ok(versioned);
    }
    if plain.is_file() {
        return Ok(plain);
    }
    Err(format!(
        "no kernel image: $STEPCTR_VM_KERNEL is not set, and neither {} nor {} exists",
        versioned.display(),
        plain.display()
    ))
}

/// A statically linked busybox (an ELF without a PT_INTERP program header: no dynamic loader).
pub fn find_static_busybox() -> std::result::Result<PathBuf, String> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = Path::new(p);
        if let Ok(bytes) = std::fs::read(p) {
            if is_static_elf(&bytes) {
                return Ok(p.to_path_buf());
            }
        }
    }
    Err("no statically linked busybox at /bin/busybox or /usr/bin/busybox: install the Debian package busybox-static".into())
}

/// A 64-bit little-endian ELF with no PT_INTERP.
fn is_static_elf(b: &[u8]) -> bool {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap_or([0xff; 8])) as usize;
    let (entsize, num) = (u16_at(0x36), u16_at(0x38));
    if entsize < 4 {
        return false;
    }
    for i in 0..num {
        let o = phoff.saturating_add(i * entsize);
        let Some(t) = b.get(o..o + 4) else {
            return false;
        };
        if u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == 3 {
            return false; // PT_INTERP: dynamically linked
        }
    }
    true
}

/// A cpio archive in the "newc" format (what the kernel unpacks as an initramfs): per entry a
/// 110-byte ASCII header (`070701` and 13 fields of 8 hex digits), the name and a NUL padded
/// to 4 bytes, the data padded to 4 bytes; the last entry is `TRAILER!!!`.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// The /init of the VM: the marker (with the guest kernel's uptime), then power off at once.
const INIT: &str = "#!/bin/busybox sh\n\
/bin/busybox mount -t proc proc /proc\n\
echo \"STEPCTR-VM-USERSPACE uptime=$(/bin/busybox cut -d' ' -f1 /proc/uptime)\"\n\
/bin/busybox poweroff -f\n";

/// The initramfs: /bin/busybox, /dev/console, /proc, /init.
pub fn initramfs(busybox: &[u8]) -> Vec<u8> {
    let mut c = Cpio::default();
    for d in ["bin", "dev", "proc"] {
        c.dir(d);
    }
    c.file("bin/busybox", 0o755, busybox);
    c.char_dev("dev/console", 5, 1);
    c.file("init", 0o755, INIT.as_bytes());
    c.finish()
}

/// A temporary directory, removed when dropped (on every path out).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("stepctr-vmboot-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&p).with_context(|| format!("mkdir {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// qemu, killed and reaped if it is still running when dropped.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What is missing to boot a VM here, as one line (None: qemu, a kernel and busybox are there).
pub fn missing() -> Option<String> {
    let mut gone = Vec::new();
    if find_qemu().is_none() {
        gone.push(
            "qemu-system-x86_64 is not on $PATH (install the Debian package qemu-system-x86)"
                .to_string(),
        );
    }
    if let Err(e) = find_kernel() {
        gone.push(e);
    }
    if let Err(e) = find_static_busybox() {
        gone.push(e);
    }
    (!gone.is_empty()).then(|| gone.join("; "))
}

/// Build the initramfs in a temporary directory, boot, measure. The directory is removed and
/// qemu is gone (killed after [`TIMEOUT`]) whatever happens.
pub fn boot() -> Result<Boot> {
    if let Some(why) = missing() {
        bail!("demo startup --vm: cannot boot a VM: {why}");
    }
    let (Some(qemu), Ok(kernel), Ok(busybox)) = (find_qemu(), find_kernel(), find_static_busybox())
    else {
        bail!("demo startup --vm: cannot boot a VM");
    };
    let dir = TempDir::new()?;
    let bb = std::fs::read(&busybox).with_context(|| format!("read {}", busybox.display()))?;
    let initrd = dir.0.join("initramfs.cpio");
    std::fs::write(&initrd, initramfs(&bb))
        .with_context(|| format!("write {}", initrd.display()))?;

    let err_file = dir.0.join("qemu.stderr");
    let err_out = std::fs::File::create(&err_file)
        .with_context(|| format!("create {}", err_file.display()))?;
    let began = Instant::now();
    let child = Command::new(&qemu)
        .args(["-accel", "tcg", "-m", "256", "-smp", "1"])
        .args([
            "-nographic",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_out)
        .spawn()
        .with_context(|| format!("spawn {}", qemu.display()))?;
    let mut vm = Vm(child);
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let out = vm.0.stdout.take();
    let reader = std::thread::spawn(move || {
        if let Some(out) = out {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = began + TIMEOUT;
    let mut booted: Option<(Duration, Option<f64>)> = None;
    let mut tail: Vec<String> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, line)) => {
                if booted.is_none() {
                    if let Some(i) = line.find(MARKER) {
                        let uptime = line[i..]
                            .split("uptime=")
                            .nth(1)
                            .and_then(|u| u.trim().parse::<f64>().ok());
                        booted = Some((at.duration_since(began), uptime));
                    }
                }
                tail.push(line);
                if tail.len() > 5 {
                    tail.remove(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break, // qemu closed its stdout
            Err(mpsc::RecvTimeoutError::Timeout) => {
                drop(vm); // kills and reaps qemu
                let _ = reader.join();
                bail!(
                    "demo startup --vm: the VM did not finish within {} s (qemu killed)",
                    TIMEOUT.as_secs()
                );
            }
        }
    }
    let status = loop {
        if let Some(s) = vm.0.try_wait().context("wait for qemu")? {
            break s;
        }
        if Instant::now() >= deadline {
            drop(vm);
            bail!(
                "demo startup --vm: qemu did not exit within {} s (killed)",
                TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let total = began.elapsed();
    let _ = reader.join();
    let Some((boot, guest_uptime_s)) = booted else {
        let err = std::fs::read_to_string(&err_file).unwrap_or_default();
        let said = err
            .lines()
            .chain(tail.iter().map(String::as_str))
            .last()
            .unwrap_or("");
        bail!(
            "demo startup --vm: the VM never reached user space (qemu: {status}){}",
            if said.is_empty() {
                String::new()
            } else {
                format!(", its last words: {}", said.trim())
            }
        );
    };
    drop(dir);
    Ok(Boot {
        boot,
        total,
        guest_uptime_s,
        kernel,
        qemu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_aligned_and_end_with_the_trailer() {
        let a = initramfs(b"12345");
        assert_eq!(a.len() % 4, 0);
        assert!(a.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("bin/busybox\0"));
        assert!(text.contains("TRAILER!!!\0"));
        // dev/console: a character device 5,1 (mode 020600).
        let i = text.find("dev/console").unwrap();
        let header = &text[i - 110..i];
        assert_eq!(&header[14..22], "00002180");
        assert_eq!(&header[78..86], "00000005");
        assert_eq!(&header[86..94], "00000001");
    }

    #[test]
    fn static_elf_has_no_interpreter() {
        assert!(!is_static_elf(b"not an elf"));
        if let Ok(b) = std::fs::read("/proc/self/exe") {
            // The test binary is dynamically linked (glibc): it has a PT_INTERP.
            assert!(!is_static_elf(&b));
        }
    }
}
