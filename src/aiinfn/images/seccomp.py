"""The Localhost seccomp profile notebooks with Apptainer run under: the runtime's default plus user namespaces.

Why (facts, each checked against its source where one was reachable here):

* Apptainer installed from its non-setuid package runs containers **unprivileged**: it creates a user
  namespace (``unshare``/``clone`` with ``CLONE_NEWUSER``), then a mount namespace in which it mounts the
  image (extracted to a temporary directory when FUSE is unavailable, as in a pod without /dev/fuse),
  bind-mounts the user's paths and changes root (``pivot_root`` or ``chroot``). No capability and no
  setuid binary are involved; the kernel grants those operations only inside the new namespaces.
* containerd's **RuntimeDefault** profile (its ``contrib/seccomp`` DefaultProfile, what RKE2's containerd
  applies for ``seccompProfile: RuntimeDefault``) refuses exactly these: ``mount``, ``umount2``, ``unshare``,
  ``setns``, unrestricted ``clone`` are allowed only when CAP_SYS_ADMIN is in the bounding set, ``chroot``
  only with CAP_SYS_CHROOT, and without CAP_SYS_ADMIN ``clone`` is allowed only when none of the
  ``CLONE_NEW*`` flags is set (a masked-equal rule on its flags argument). Pod Security ``restricted``
  drops every capability, so a notebook under RuntimeDefault can never make a user namespace.
* Pod Security ``restricted`` allows ``seccompProfile.type: Localhost`` (and RuntimeDefault), with
  ``runAsNonRoot`` and every capability dropped: a Localhost profile that is RuntimeDefault's rules
  plus the namespace calls keeps the pod ``restricted``; the admission policies still enforce the rest.
* The kernel must allow unprivileged user namespaces: ``user.max_user_namespaces`` above 0 and, on Debian
  kernels, ``kernel.unprivileged_userns_clone=1`` (both Debian 12's defaults; the ``userns`` role writes
  them so that no image or host tuning turns them off).

This module holds the baseline (containerd's DefaultProfile for amd64 with an empty bounding set, as a
restricted pod has it, transcribed as data) and what Apptainer adds; ``profile()`` is the JSON the role
``userns`` installs in the kubelet's seccomp directory (``/var/lib/kubelet/seccomp/aiinfn/apptainer.json``)
and the notebooks of images that carry Apptainer select (``localhostProfile: aiinfn/apptainer.json``).

Gaps, named: the baseline is transcribed from one containerd version (its ``contrib/seccomp``, read for
this module) plus the later additions listed in ``NEWER_DEFAULT`` as recalled, not compared with the exact
containerd RKE2 v1.33 ships (no containerd source of that version was readable here); regenerate it
from that version before relying on "only what Apptainer adds". No kubelet, containerd or Apptainer runs
here: the profile is checked as data (format, difference from the baseline), never enforced by a kernel.
AppArmor: on nodes where AppArmor is enabled, containerd's default AppArmor profile is also applied and
may refuse the mounts (the Docker-derived default denies ``mount``); that is not solved here.
"""

from __future__ import annotations

import json
from typing import Any

#: Where the kubelet reads Localhost profiles from (its root dir's ``seccomp``), and ours under it.
KUBELET_SECCOMP_DIR = "/var/lib/kubelet/seccomp"
PROFILE = "aiinfn/apptainer.json"

#: containerd's DefaultProfile allow list (amd64, no capability in the bounding set): one rule, no arguments.
_DEFAULT_ALLOW_TEXT = """
accept accept4 access alarm bind brk capget capset chdir chmod chown chown32 clock_getres clock_getres_time64
clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close connect copy_file_range creat dup
dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_wait epoll_wait_old eventfd
eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark
fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64
futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32
getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel
ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc
kill lchown lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise memfd_create mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect
mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64
mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap nanosleep newfstatat _newselect
open openat openat2 pause pipe pipe2 poll ppoll ppoll_time64 prctl pread64 preadv prlimit64 pselect6
pselect6_time64 pwrite64 pwritev read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64
recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64
send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address
setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
socket socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range
syncfs sysinfo syslog tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes
vfork vmsplice wait4 waitid waitpid write writev arch_prctl modify_ldt
"""
_DEFAULT_ALLOW = tuple(_DEFAULT_ALLOW_TEXT.split())
#: Calls later containerd defaults also allow (recalled, see the module's gaps): without them a current
#: glibc or CPython loses functions it uses (close_range, rseq, pidfd_*).
NEWER_DEFAULT = ("close_range", "epoll_pwait2", "futex_waitv", "membarrier", "pidfd_getfd", "pidfd_open",
                 "pidfd_send_signal", "process_mrelease", "rseq")
#: The flags RuntimeDefault forbids in ``clone`` without CAP_SYS_ADMIN: CLONE_NEWNS | NEWUTS | NEWIPC |
#: NEWUSER | NEWPID | NEWNET | NEWCGROUP.
CLONE_NAMESPACES = 0x00020000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x02000000
#: What Apptainer's unprivileged mode needs beyond RuntimeDefault: the namespace calls, the mounts of its
#: container inside them, the change of root, and ``clone``/``clone3`` with namespace flags (RuntimeDefault
#: answers ``clone3`` with ENOSYS so that glibc falls back to the filtered ``clone``).
APPTAINER_ADDS = ("chroot", "clone", "clone3", "mount", "pivot_root", "setns", "umount2", "unshare")
ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def _personality() -> list[dict[str, Any]]:
    return [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]} for v in (0x0, 0x0008, 0xFFFFFFFF)]


def runtime_default() -> dict[str, Any]:
    """The baseline: RuntimeDefault for a pod without capabilities, in the format containerd reads
    (the Docker/OCI seccomp JSON: ``defaultAction``, ``architectures``, ``syscalls`` rules)."""
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": list(ARCHES),
        "syscalls": [
            {"names": sorted({*_DEFAULT_ALLOW, *NEWER_DEFAULT}), "action": "SCMP_ACT_ALLOW"},
            *_personality(),
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    }


def profile() -> dict[str, Any]:
    """The Localhost profile: the baseline with Apptainer's calls allowed outright (the filtered ``clone``
    and the ENOSYS ``clone3`` give way to unconditional rules)."""
    base = runtime_default()
    rules = [r for r in base["syscalls"] if r["names"] not in (["clone"], ["clone3"])]
    rules.append({"names": sorted(APPTAINER_ADDS), "action": "SCMP_ACT_ALLOW"})
    return {**base, "syscalls": rules}


def profile_text() -> str:
    """The file the role installs (byte-stable)."""
    return json.dumps(profile(), indent=1, sort_keys=True) + "\n"
