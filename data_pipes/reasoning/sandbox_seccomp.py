"""A small seccomp filter for the sandbox (given to ``bwrap --seccomp``): syscalls a Python program never
needs and that reach other processes or large kernel surfaces fail with ``EPERM``.

The namespaces already hide every process outside the run, but inside it the program could still ``ptrace``
bubblewrap's own first process (same uid, no capabilities on either side), stop it and hang the run, or attach
to its own children. Denied: ``ptrace``, ``process_vm_readv/writev``, ``kcmp``, ``perf_event_open``, ``bpf``,
``userfaultfd``, the key-ring calls, every mount / namespace call (``mount``, ``umount2``, ``pivot_root``,
``unshare``, ``setns``, the new mount API), ``io_uring``, module and ``kexec`` loading, ``iopl``/``ioperm``,
``swapon/off``, ``reboot``, ``open_by_handle_at``; and memory that ``RLIMIT_AS`` does not count, because it
lives in a file or the IPC namespace rather than in a mapping: ``memfd_create``/``memfd_secret`` (64 descriptors
of 16 MB per process, times 16 processes) and System V ``shmget``/``msgget`` (segments kept after ``shmdt``).
``fallocate`` fails with ``EOPNOTSUPP`` (``FALLOC_FL_KEEP_SIZE`` reserves disk beyond ``RLIMIT_FSIZE``: stdout
and stderr are files on the host's disk). Syscalls of another ABI than the machine's (``int 0x80``,
x32) are denied altogether, so the numbers cannot be dodged. The filter is classic BPF assembled here, so no
library is needed; on an architecture without a table below there is no filter (the layer is not listed).
"""

from __future__ import annotations

import functools
import os
import platform
import struct

ERRNO_EPERM = 0x0005_0000 | 1  # SECCOMP_RET_ERRNO | EPERM
ERRNO_EOPNOTSUPP = 0x0005_0000 | 95  # glibc's posix_fallocate then falls back to writing (under RLIMIT_FSIZE)
ALLOW = 0x7FFF_0000  # SECCOMP_RET_ALLOW
X32_BIT = 0x4000_0000

# names -> numbers, per architecture (from the kernel's syscall tables)
DENIED = {
    "x86_64": {
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "kcmp": 312,
        "perf_event_open": 298,
        "bpf": 321,
        "userfaultfd": 323,
        "add_key": 248,
        "request_key": 249,
        "keyctl": 250,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "unshare": 272,
        "setns": 308,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "iopl": 172,
        "ioperm": 173,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "open_by_handle_at": 304,
        "memfd_create": 319,
        "memfd_secret": 447,
        "shmget": 29,
        "msgget": 68,
    },
    "aarch64": {
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "kcmp": 272,
        "perf_event_open": 241,
        "bpf": 280,
        "userfaultfd": 282,
        "add_key": 217,
        "request_key": 218,
        "keyctl": 219,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "unshare": 97,
        "setns": 268,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "mount_setattr": 442,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "swapon": 224,
        "swapoff": 225,
        "reboot": 142,
        "open_by_handle_at": 265,
        "memfd_create": 279,
        "memfd_secret": 447,
        "shmget": 194,
        "msgget": 186,
    },
}
# ``fallocate`` with ``FALLOC_FL_KEEP_SIZE`` reserves disk blocks without growing the file, so ``RLIMIT_FSIZE``
# never applies: on stdout / stderr (files on the host's disk) it could fill that disk; refused as unsupported
NOT_SUPPORTED = {"x86_64": {"fallocate": 285}, "aarch64": {"fallocate": 47}}
AUDIT_ARCH = {"x86_64": 0xC000_003E, "aarch64": 0xC000_00B7}

# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
RET_K = 0x06


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


@functools.lru_cache(maxsize=1)
def filter_bytes() -> bytes | None:
    """The compiled filter for this machine, or None when its architecture has no table."""
    machine = platform.machine()
    if machine not in DENIED:
        return None
    numbers = sorted(set(DENIED[machine].values()))
    prog: list[tuple[int, int, int, int]] = [(LD_W_ABS, 0, 0, 4)]  # seccomp_data.arch
    prog.append((JEQ_K, 0, 0, AUDIT_ARCH[machine]))  # jf patched: another ABI -> deny
    prog.append((LD_W_ABS, 0, 0, 0))  # seccomp_data.nr
    if machine == "x86_64":
        prog.append((JGE_K, 0, 0, X32_BIT))  # jt patched: x32 -> deny
    prog += [(JEQ_K, 0, 0, nr) for nr in numbers]  # jt patched
    first_unsupported = len(prog)
    prog += [(JEQ_K, 0, 0, nr) for nr in sorted(set(NOT_SUPPORTED[machine].values()))]  # jt patched
    prog.append((RET_K, 0, 0, ALLOW))
    deny = len(prog)
    prog.append((RET_K, 0, 0, ERRNO_EPERM))
    unsupported = len(prog)
    prog.append((RET_K, 0, 0, ERRNO_EOPNOTSUPP))
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        if i == 1:
            jf = deny - (i + 1)
        elif code in (JEQ_K, JGE_K):
            jt = (unsupported if i >= first_unsupported else deny) - (i + 1)
        out.append(_insn(code, jt, jf, k))
    return b"".join(out)


def filter_fd() -> int | None:
    """A pipe's read end holding the filter (for ``bwrap --seccomp``), or None; the caller closes it."""
    data = filter_bytes()
    if data is None:
        return None
    r, w = os.pipe()
    try:
        os.write(w, data)  # a few hundred bytes: always fits the pipe's buffer
    finally:
        os.close(w)
    return r
