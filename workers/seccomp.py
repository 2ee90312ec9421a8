"""The system calls a sandboxed run may not make, for both backends.

One list, two encodings: a classic BPF program for bubblewrap (`--seccomp FD`,
written here, so no libseccomp binding is needed) and the OCI runtime spec's
`linux.seccomp` section for runc (which compiles it with libseccomp). Every
refused call answers EPERM, so a build that probes for a feature sees "not
permitted" and goes on; clone3 answers ENOSYS, because its flags sit in memory
a filter cannot read, and glibc then falls back to clone, whose flags it can.

Why each call is refused is said beside it in DENIED; the list follows
Docker's default profile where they meet, and goes further where a build farm
runs strangers' code.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from typing import Any

# name -> why; the table below gives each its number on each architecture.
DENIED: dict[str, str] = {
    # The kernel's keyrings are not namespaced: a build could read or plant keys
    # of the host's users (a finding of the sandbox review).
    "keyctl": "kernel keyrings are shared with the host",
    "add_key": "kernel keyrings are shared with the host",
    "request_key": "kernel keyrings are shared with the host",
    # Tracing lets one process write into another's memory; ptrace of the
    # sandbox's init also hung builds until their timeout.
    "ptrace": "writes into other processes; hangs the sandbox's init",
    "process_vm_readv": "reads other processes' memory",
    "process_vm_writev": "writes other processes' memory",
    "kcmp": "compares kernel pointers of other processes",
    # The root is read-only by construction; mounting would undo it.
    "mount": "would remount the read-only inputs",
    "umount2": "would uncover what lies beneath a mount",
    "pivot_root": "changes the root the sandbox was given",
    "fsopen": "the new mount API, mount by another name",
    "fsconfig": "the new mount API, mount by another name",
    "fsmount": "the new mount API, mount by another name",
    "fspick": "the new mount API, mount by another name",
    "move_mount": "the new mount API, mount by another name",
    "open_tree": "the new mount API, mount by another name",
    "mount_setattr": "the new mount API, mount by another name",
    # New namespaces, a user namespace above all, give a process every
    # capability again inside them: the kernel's largest attack surface.
    "unshare": "new namespaces give back capabilities",
    "setns": "joins namespaces the sandbox was not given",
    # Kernel attack surface a build has no use for.
    "bpf": "loads programs into the kernel",
    "perf_event_open": "kernel profiling: side channels and a history of exploits",
    "userfaultfd": "stalls the kernel at will, a staple of exploits",
    "io_uring_setup": "a second system-call interface that seccomp does not see",
    "io_uring_enter": "a second system-call interface that seccomp does not see",
    "io_uring_register": "a second system-call interface that seccomp does not see",
    "open_by_handle_at": "opens files by handle, past the mount namespace",
    "name_to_handle_at": "pairs with open_by_handle_at",
    "lookup_dcookie": "kernel profiling internals",
    # The machine's own state, which no build may change.
    "kexec_load": "replaces the running kernel",
    "kexec_file_load": "replaces the running kernel",
    "init_module": "loads kernel modules",
    "finit_module": "loads kernel modules",
    "delete_module": "unloads kernel modules",
    "reboot": "restarts the machine",
    "swapon": "changes the host's swap",
    "swapoff": "changes the host's swap",
    "acct": "switches process accounting",
    "settimeofday": "sets the host's clock",
    "clock_settime": "sets the host's clock",
    "clock_adjtime": "sets the host's clock",
    "adjtimex": "sets the host's clock",
    "syslog": "reads the kernel's log (addresses)",
    "quotactl": "changes disk quotas",
    "vhangup": "hangs up the terminal",
    "iopl": "raw I/O port access",
    "ioperm": "raw I/O port access",
    "uselib": "an obsolete loader interface",
}

# Syscall numbers: x86_64 from asm/unistd_64.h, aarch64 from asm-generic/unistd.h
# (a unit test compares them with the headers where those are installed).
_NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {
        "keyctl": 250, "add_key": 248, "request_key": 249, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "mount": 165,
        "umount2": 166, "pivot_root": 155, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
        "unshare": 272, "setns": 308, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_by_handle_at": 304, "name_to_handle_at": 303, "lookup_dcookie": 212,
        "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
        "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
        "syslog": 103, "quotactl": 179, "vhangup": 153, "iopl": 172, "ioperm": 173,
        "uselib": 134, "clone": 56, "clone3": 435, "personality": 135,
    },
    "aarch64": {
        "keyctl": 219, "add_key": 217, "request_key": 218, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "mount": 40,
        "umount2": 39, "pivot_root": 41, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
        "unshare": 97, "setns": 268, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_by_handle_at": 265, "name_to_handle_at": 264, "lookup_dcookie": 18,
        "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171,
        "syslog": 116, "quotactl": 60, "vhangup": 58, "clone": 220, "clone3": 435,
        "personality": 92,
    },
}

# clone() may make processes and threads, never namespaces (CLONE_NEWNS,
# NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME).
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                   0x20000000, 0x40000000, 0x00000080)
# personality() may not turn off address randomisation, map page zero, make reads
# imply execution or change the address-space layout: each weakens the kernel's
# defences against the exploits a hostile build would try. Choosing the 32-bit
# flavour (PER_LINUX32, for setarch linux32) and other harmless bits stay allowed.
DANGEROUS_PERSONALITY_BITS = (0x0040000, 0x0100000, 0x0200000, 0x0400000, 0x0800000,
                              0x8000000)
PERSONALITY_QUERY = 0xFFFFFFFF  # reads the persona; allowed where the filter can tell


@dataclass(frozen=True)
class _Arch:
    """An architecture the filter knows: its audit number and its name in OCI's profile."""

    audit: int  # AUDIT_ARCH_*
    oci: str  # SCMP_ARCH_*
    x32_bit: int  # syscall numbers with this bit are another ABI (x86_64's x32)


_ARCHES = {"x86_64": _Arch(0xC000003E, "SCMP_ARCH_X86_64", 0x40000000),
           "aarch64": _Arch(0xC00000B7, "SCMP_ARCH_AARCH64", 0)}

# Classic BPF, as the kernel reads a seccomp filter.
_LD_W_ABS, _JEQ, _JSET, _JGE, _RET = 0x20, 0x15, 0x45, 0x35, 0x06
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_NR, _ARCH_OFFSET, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (arg0's low word)


def machine() -> str:
    """The architecture this filter is for; another one is refused, not guessed."""
    arch = os.uname().machine
    if arch not in _ARCHES:
        from kiln.errors import InputError

        raise InputError(f"the sandbox's system-call filter knows no {arch} numbers",
                         reason="sandbox-missing")
    return arch


def bpf_program(arch: str | None = None) -> bytes:
    """The filter as a `struct sock_filter[]`, for bubblewrap's --seccomp."""
    arch = arch or machine()
    numbers = _NUMBERS[arch]
    target = _ARCHES[arch]
    program: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH_OFFSET),
        (_JEQ, 1, 0, target.audit),
        (_RET, 0, 0, _KILL_PROCESS),  # another ABI (i386, arm32) has other numbers
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if target.x32_bit:
        program += [(_JGE, 0, 1, target.x32_bit), (_RET, 0, 0, _ERRNO | errno.ENOSYS)]
    for name in DENIED:
        if name in numbers:
            program += [(_JEQ, 0, 1, numbers[name]), (_RET, 0, 0, _ERRNO | errno.EPERM)]
    program += [(_JEQ, 0, 1, numbers["clone3"]), (_RET, 0, 0, _ERRNO | errno.ENOSYS)]
    # clone: refused when any namespace flag is set in its first argument.
    mask = 0
    for flag in NAMESPACE_FLAGS:
        mask |= flag
    program += [(_JEQ, 0, 4, numbers["clone"]),
                (_LD_W_ABS, 0, 0, _ARG0),
                (_JSET, 0, 1, mask),
                (_RET, 0, 0, _ERRNO | errno.EPERM),
                (_RET, 0, 0, _ALLOW)]
    # personality: the query passes, a dangerous bit does not.
    dangerous = 0
    for bit in DANGEROUS_PERSONALITY_BITS:
        dangerous |= bit
    program += [(_JEQ, 0, 4, numbers["personality"]),
                (_LD_W_ABS, 0, 0, _ARG0),
                (_JEQ, 2, 0, PERSONALITY_QUERY),
                (_JSET, 0, 1, dangerous),
                (_RET, 0, 0, _ERRNO | errno.EPERM),
                (_RET, 0, 0, _ALLOW)]
    return b"".join(struct.pack("<HBBI", *instruction) for instruction in program)


def oci_profile(arch: str | None = None) -> dict[str, Any]:
    """The same filter as the OCI runtime spec's `linux.seccomp`, for runc."""
    arch = arch or machine()
    numbers = _NUMBERS[arch]
    denied = [name for name in DENIED if name in numbers]
    eperm = {"action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    syscalls: list[dict[str, Any]] = [
        {"names": denied, **eperm},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]
    # Rules are ORed, and runc ORs the comparisons of one argument too: one rule a bit.
    # So the personality query, which has every bit set, is refused under runc.
    syscalls += [{"names": [name], **eperm,
                  "args": [{"index": 0, "value": bit, "valueTwo": bit,
                            "op": "SCMP_CMP_MASKED_EQ"}]}
                 for name, bits in (("clone", NAMESPACE_FLAGS),
                                    ("personality", DANGEROUS_PERSONALITY_BITS))
                 for bit in bits]
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": [_ARCHES[arch].oci],
            "syscalls": syscalls}
