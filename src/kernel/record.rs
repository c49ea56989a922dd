//! The recording kernel for unit tests: no root, no real calls. It keeps ONE globally ordered
//! list of the calls of every (pretend) process, so tests can assert on order across a fork:
//! "the cgroup is joined before exec", "pivot_root comes before the old root is detached".
//!
//! A spawned child's body runs inline, at the point of the fork, under a made-up pid. That is
//! the order the real stages produce too, because a parent always waits for its child at the
//! next step (wait4 or the error channel) before it makes another call.

use super::{render, Child, ChildBody, Errno, KResult, Kernel, Ret, Sys};
use std::cell::{Cell, RefCell};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub pid: i32,
    pub call: Sys,
    pub result: Result<Ret, Errno>,
    pub why: String,
}

impl Recorded {
    /// The call in strace syntax, e.g. `mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL)`.
    pub fn text(&self) -> String {
        render::call(&self.call, render::Detail::Full, &|_| None)
    }
}

type Matcher = Box<dyn Fn(&Sys) -> bool>;

pub struct Record {
    calls: RefCell<Vec<Recorded>>,
    pids: RefCell<Vec<i32>>,
    next_pid: Cell<i32>,
    next_fd: Cell<i32>,
    /// pid -> how the pretend child ended (Stopped if its last act was SIGSTOP to itself).
    ends: RefCell<Vec<(i32, i32)>>,
    failures: RefCell<Vec<(Matcher, Errno)>>,
    /// pid -> the error its body returned.
    errors: RefCell<Vec<(i32, String)>>,
    /// Pretend stepctr has several threads (so it forks helpers instead of setns itself).
    threaded: Cell<bool>,
}

impl Default for Record {
    fn default() -> Self {
        Self::new()
    }
}

impl Record {
    pub fn new() -> Self {
        Record {
            calls: RefCell::new(Vec::new()),
            pids: RefCell::new(vec![100]),
            next_pid: Cell::new(101),
            next_fd: Cell::new(3),
            ends: RefCell::new(Vec::new()),
            failures: RefCell::new(Vec::new()),
            errors: RefCell::new(Vec::new()),
            threaded: Cell::new(false),
        }
    }

    /// From now on, pretend stepctr has several threads (see `Kernel::single_threaded`).
    pub fn pretend_threads(&self) {
        self.threaded.set(true);
    }

    /// Make the first call that `matches` fail with `errno`.
    pub fn fail_on(&self, matches: impl Fn(&Sys) -> bool + 'static, errno: Errno) {
        self.failures.borrow_mut().push((Box::new(matches), errno));
    }

    pub fn calls(&self) -> Vec<Recorded> {
        self.calls.borrow().clone()
    }

    /// The calls as strace text, with `[pid N]` for children, in global order.
    pub fn texts(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .map(|r| format!("[pid {}] {}", r.pid, r.text()))
            .collect()
    }

    fn current(&self) -> i32 {
        *self.pids.borrow().last().unwrap_or(&100)
    }
}

impl Kernel for Record {
    fn sys(&self, call: &Sys, why: &str) -> Result<Ret, Errno> {
        let pid = self.current();
        let injected = {
            let mut f = self.failures.borrow_mut();
            f.iter().position(|(m, _)| m(call)).map(|i| f.remove(i).1)
        };
        let result = match injected {
            Some(e) => Err(e),
            None => Ok(match call {
                Sys::Openat { .. } => {
                    let fd = self.next_fd.get();
                    self.next_fd.set(fd + 1);
                    Ret {
                        val: fd as i64,
                        wstatus: 0,
                    }
                }
                Sys::Write { data, .. } => Ret {
                    val: data.len() as i64,
                    wstatus: 0,
                },
                Sys::Statfs { .. } => Ret {
                    val: 0x6367_7270,
                    wstatus: 0,
                },
                // A recorded process works in the root it was given.
                Sys::Getcwd { out } => {
                    out.with(|b| b.extend_from_slice(b"/\0"));
                    Ret { val: 2, wstatus: 0 }
                }
                Sys::Wait4 { pid, .. } => {
                    let status = self
                        .ends
                        .borrow()
                        .iter()
                        .rev()
                        .find(|(p, _)| p == pid)
                        .map_or(0, |(_, s)| *s);
                    Ret {
                        val: *pid as i64,
                        wstatus: status,
                    }
                }
                _ => Ret::default(),
            }),
        };
        if let (Sys::Kill { pid: target, sig }, Ok(_)) = (call, &result) {
            let status = if *sig == libc::SIGSTOP {
                (libc::SIGSTOP << 8) | 0x7f
            } else {
                *sig
            };
            self.ends.borrow_mut().push((*target, status));
        }
        self.calls.borrow_mut().push(Recorded {
            pid,
            call: call.clone(),
            result,
            why: why.to_string(),
        });
        result
    }

    fn spawn(&self, why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        self.forked(Sys::Clone, why, body)
    }

    fn spawn_into(&self, cgroup_fd: i32, why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        self.forked(Sys::Clone3 { cgroup: cgroup_fd }, why, body)
    }

    fn child_error(&self, child: &Child) -> Option<String> {
        self.errors
            .borrow()
            .iter()
            .find(|(p, _)| *p == child.pid)
            .map(|(_, e)| e.clone())
    }

    fn getpid(&self) -> i32 {
        self.current()
    }

    fn single_threaded(&self) -> bool {
        !self.threaded.get()
    }
}

impl Record {
    /// A pretend fork (`call` is clone or clone3): recorded, then the body runs inline under a
    /// new pid. An error injected for `call` (`fail_on`) fails it without a child, as the
    /// kernel would.
    fn forked(&self, call: Sys, _why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        let injected = {
            let mut f = self.failures.borrow_mut();
            f.iter().position(|(m, _)| m(&call)).map(|i| f.remove(i).1)
        };
        if let Some(errno) = injected {
            self.calls.borrow_mut().push(Recorded {
                pid: self.current(),
                call: call.clone(),
                result: Err(errno),
                why: String::new(),
            });
            return Err(super::SysError::new(&call, errno));
        }
        let pid = self.next_pid.get();
        self.next_pid.set(pid + 1);
        self.calls.borrow_mut().push(Recorded {
            pid: self.current(),
            call,
            result: Ok(Ret {
                val: pid as i64,
                wstatus: 0,
            }),
            why: String::new(),
        });
        self.pids.borrow_mut().push(pid);
        let outcome = body();
        self.pids.borrow_mut().pop();
        let stopped = self
            .ends
            .borrow()
            .iter()
            .any(|(p, s)| *p == pid && *s & 0xff == 0x7f);
        if !stopped {
            let status = if outcome.is_ok() { 0 } else { 1 << 8 };
            self.ends.borrow_mut().push((pid, status));
        }
        if let Err(e) = outcome {
            self.errors.borrow_mut().push((pid, format!("{e:#}")));
        }
        Ok(Child {
            pid,
            err_fd: Cell::new(-1),
        })
    }
}
