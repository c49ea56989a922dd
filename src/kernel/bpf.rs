//! Classic BPF, as seccomp(2) runs it: the opcodes and `struct seccomp_data` offsets both
//! seccomp filters (the default one of `security::seccomp`, the OCI profiles of
//! `oci::seccomp`) are written with, and an interpreter for their unit tests.

use super::BpfInsn;

/// `BPF_LD | BPF_W | BPF_ABS`: load a 32-bit word of `seccomp_data`.
pub const LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JA`: jump forward by k.
pub const JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`, `JGT`, `JGE`: compare with k, jump by jt or jf.
pub const JMP_JEQ_K: u16 = 0x15;
pub const JMP_JGT_K: u16 = 0x25;
pub const JMP_JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`: the verdict k.
pub const RET_K: u16 = 0x06;
/// Offsets of `nr` and `arch` in `struct seccomp_data`.
pub const NR: u32 = 0;
pub const ARCH: u32 = 4;
/// AUDIT_ARCH_X86_64, the `arch` of x86_64 (and x32) calls.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32's system call numbers have this bit set (same arch value as x86_64).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// An instruction without jumps.
pub fn stmt(code: u16, k: u32) -> BpfInsn {
    BpfInsn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A conditional jump: `jt` instructions ahead if true, `jf` if false.
pub fn jump(code: u16, k: u32, jt: u8, jf: u8) -> BpfInsn {
    BpfInsn { code, jt, jf, k }
}

/// For the unit tests of both filters: what the kernel does with a call, running the program on
/// its `seccomp_data` (a small classic-BPF interpreter for the instructions seccompiler and the
/// two filters emit).
#[cfg(test)]
pub(crate) fn run_bpf(prog: &[BpfInsn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let at = i.k as usize;
                acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
            }
            0x54 => acc &= i.k,
            JMP_JA => pc += i.k as usize,
            0x15 | 0x25 | 0x35 | 0x45 => {
                let yes = match i.code {
                    0x15 => acc == i.k,
                    0x25 => acc > i.k,
                    0x35 => acc >= i.k,
                    _ => acc & i.k != 0,
                };
                pc += if yes { i.jt } else { i.jf } as usize;
            }
            RET_K => return i.k,
            c => panic!("instruction {c:#x} not expected"),
        }
    }
}
