"""The one module that spawns and signals processes.

A child is started from a ``ReplicaPlan`` value in a new session (so its
whole process group can be signalled), with its own env mapping, pipes of our
own for stdout/stderr, and a parent-death signal set before exec by
``setpriv --pdeathsig`` (never ``preexec_fn``). Its exit is awaited on a
pidfd, so the kernel wakes us: no polling, no SIGCHLD handler, no thread.
We reap only the pid we spawned, never ``waitpid(-1)``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import psutil

from .sockets import shim_prefix

#: The exec wrapper that arms the parent-death signal, resolved once.
_SETPRIV: str | None = shutil.which("setpriv")
_PDEATH_SHIM = (
    "import ctypes,os,sys;"
    "ctypes.CDLL(None,use_errno=True).prctl(1,9,0,0,0);"
    "os.getppid()==int(sys.argv[1]) or os._exit(1);"
    "os.execvp(sys.argv[2],sys.argv[2:])"
)


_PRLIMIT: str | None = shutil.which("prlimit")

#: Binding wrappers the planner puts before ``--`` and the user's command.
_WRAPPERS = frozenset({"numactl", "taskset"})


def pdeathsig_prefix() -> list[str]:
    """argv that makes the next exec'd program die with SIGKILL when we die."""
    if _SETPRIV is not None:
        return [_SETPRIV, "--pdeathsig", "SIGKILL", "--"]
    return [sys.executable, "-S", "-c", _PDEATH_SHIM, str(os.getpid())]


@dataclass(slots=True, eq=False)
class Child:
    """A running child: its pid, a pidfd to await its exit, and its pipes."""

    pid: int
    stdout: int
    stderr: int
    pidfd: int | None
    popen: subprocess.Popen[bytes]
    returncode: int | None = None
    descendants: list[psutil.Process] = field(default_factory=list)

    def signal_group(self, signum: int) -> bool:
        """Signal the child's whole process group; False if it is gone."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False
        return True

    def snapshot_descendants(self) -> None:
        """Remember every descendant now, so ones that leave the group die too."""
        if self.returncode is not None:
            return
        known = {p.pid for p in self.descendants}
        if PROC_CHILDREN:
            # The kernel's child lists: a few small reads instead of psutil's scan of
            # every process on the machine (0.25 s for 64 replicas at shutdown).
            for pid in _descendant_pids(self.pid):
                if pid not in known:
                    with contextlib.suppress(psutil.Error):
                        self.descendants.append(psutil.Process(pid))
            return
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        self.descendants.extend(p for p in found if p.pid not in known)

    def kill_tree(self) -> int:
        """SIGKILL the process group and every remembered descendant."""
        self.snapshot_descendants()
        killed = 0
        if self.signal_group(signal.SIGKILL):
            killed += 1
        for proc in self.descendants:
            with contextlib.suppress(psutil.Error):
                proc.kill()  # psutil checks the pid was not reused
                killed += 1
        return killed

    async def wait(self) -> int:
        """Await exit on the pidfd, then reap this pid (and only it)."""
        if self.returncode is not None:
            return self.returncode
        if self.pidfd is not None:
            await anyio.wait_readable(self.pidfd)
            status = _reap(self.pid, blocking=False)
            while status is None:  # readable means exited; the reap cannot block long
                status = _reap(self.pid, blocking=True)
        else:  # no pidfd (old kernel): one blocking wait in a worker thread
            status = await anyio.to_thread.run_sync(_reap, self.pid, True, abandon_on_cancel=True)
            assert status is not None
        self.returncode = status
        self.popen.returncode = status
        self.close_pidfd()
        return status

    def close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


#: stdout pipe capacity: 4x the default, so a chatty replica is read in big chunks
#: with a quarter of the wakeups. Only where it costs no one else (see _grow_pipe).
PIPE_SIZE = 256 * 1024


def _grow_pipe(fd: int) -> None:
    """Enlarge a pipe when this user is exempt from the kernel's pipe-page budget.

    Past fs.pipe-user-pages-soft an unprivileged user's new pipes shrink to two
    pages, which would slow every later replica (and the user's other programs).
    """
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError, AttributeError):  # no F_SETPIPE_SZ: keep the default
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


#: Whether /proc/PID/task/TID/children exists (CONFIGPROC_CHILDREN).
PROC_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def children_of(pid: int) -> list[int]:
    """``pid``'s direct children from the kernel's per-thread child lists ([] if gone)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # gone
    kids: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb", buffering=0) as f:
                kids.extend(int(k) for k in f.read().split())
        except OSError:
            continue  # the thread or process ended meanwhile
    return kids


def _descendant_pids(root: int) -> list[int]:
    """Every descendant of ``root`` now, walking the kernel's child lists."""
    found: list[int] = []
    todo = [root]
    while todo:
        kids = children_of(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def _reap(pid: int, blocking: bool) -> int | None:
    try:
        got, status = os.waitpid(pid, 0 if blocking else os.WNOHANG)
    except ChildProcessError:
        # Someone else reaped it; we cannot know how it ended.
        return 255
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status)


class SpawnError(OSError):
    """The child could not be started; ``str()`` says why in words."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    user: str | None = None,
    group: str | None = None,
    umask: int | None = None,
    fds: Sequence[int] = (),
    nofile: tuple[int, int] | None = None,
) -> Child:
    """Start ``argv`` under the parent-death wrapper in a new session.

    Raises ``SpawnError`` with the reason in words for every way a start can
    fail before the program runs: no such command, no cwd, fd or process
    limits, an unknown user.
    """
    _check_command(argv, env, cwd)
    uid, gid, groups = _identity(user, group)
    try:
        out_r, out_w = os.pipe()
    except OSError as exc:
        raise SpawnError(exc.errno or 0, _spawn_reason(exc, argv, cwd)) from exc
    try:
        err_r, err_w = os.pipe()
    except OSError as exc:
        os.close(out_r)
        os.close(out_w)
        raise SpawnError(exc.errno or 0, _spawn_reason(exc, argv, cwd)) from exc
    full = [*pdeathsig_prefix()]
    if nofile is not None:
        # The supervisor raised its own soft fd limit; the replica gets the
        # original one back, as systemd gives each service its configured limit.
        full += [_PRLIMIT or "prlimit", f"--nofile={nofile[0]}:{nofile[1]}", "--"]
    if fds:
        full += shim_prefix(fds)
    full += argv
    try:
        try:
            popen = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                pass_fds=tuple(fds),
                umask=-1 if umask is None else umask,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        finally:
            os.close(out_w)
            os.close(err_w)
    except OSError as exc:
        os.close(out_r)
        os.close(err_r)
        raise SpawnError(exc.errno or 0, _spawn_reason(exc, argv, cwd)) from exc
    except subprocess.SubprocessError as exc:
        os.close(out_r)
        os.close(err_r)
        raise SpawnError(0, f"could not start {argv[0]!r}: {exc}") from exc
    os.set_blocking(out_r, False)
    _grow_pipe(out_r)
    os.set_blocking(err_r, False)
    try:
        pidfd: int | None = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        pidfd = None
    return Child(pid=popen.pid, stdout=out_r, stderr=err_r, pidfd=pidfd, popen=popen)


def _check_command(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> None:
    """Refuse a missing cwd or program now, with a clear reason.

    The wrapper would otherwise exec it and exit 127, which reads as a crash.
    """
    if not os.path.isdir(cwd):
        raise SpawnError(errno.ENOENT, f"cwd {cwd!r} does not exist")
    if not argv:
        raise SpawnError(errno.EINVAL, "empty command")
    progs = [argv[0]]
    base = os.path.basename(argv[0])
    if base == "numactl" and "--" in argv[:-1]:
        progs.append(argv[list(argv).index("--") + 1])  # the user's program, after the wrapper
    elif base == "taskset" and len(argv) > 3 and argv[1] == "-c":
        progs.append(argv[3])  # taskset -c CPUS PROGRAM ...
    for prog in progs:
        if os.sep in prog:
            path = os.path.join(cwd, prog)
            if not os.path.exists(path):
                raise SpawnError(errno.ENOENT, f"command not found: {prog!r} (no such file)")
            if os.path.isdir(path) or not os.access(path, os.X_OK):
                raise SpawnError(errno.EACCES, f"permission denied executing {prog!r}")
        elif shutil.which(prog, path=env.get("PATH", os.defpath)) is None:
            raise SpawnError(
                errno.ENOENT, f"command not found: {prog!r} (not on PATH={env.get('PATH', '')!r})"
            )


def _identity(
    user: str | None, group: str | None
) -> tuple[int | None, int | None, list[int] | None]:
    """(uid, gid, groups) for Popen, dropping to ``user``/``group`` like login does.

    Popen alone would keep root's gid and supplementary groups when only
    ``user`` is given, so the gid and the group list are set explicitly.
    """
    if user is None and group is None:
        return None, None, None
    try:
        gid = grp.getgrnam(group).gr_gid if group is not None else None
        if user is None:
            assert gid is not None
            return None, gid, [gid]
        pw = pwd.getpwnam(user)
    except KeyError as exc:
        raise SpawnError(errno.EINVAL, f"no such user or group: {exc.args[0]}") from None
    if gid is None:
        gid = pw.pw_gid
    return pw.pw_uid, gid, os.getgrouplist(pw.pw_name, gid)


def _spawn_reason(exc: OSError, argv: Sequence[str], cwd: str) -> str:
    if exc.errno == errno.ENOENT and not os.path.isdir(cwd):
        return f"cwd {cwd!r} does not exist"
    if exc.errno == errno.ENOENT:
        return f"command not found: {argv[0]!r}"
    if exc.errno == errno.EACCES:
        return f"permission denied executing {argv[0]!r}"
    if exc.errno == errno.EAGAIN:
        return "fork failed: resource temporarily unavailable (process limit?)"
    if exc.errno == errno.EMFILE:
        return "too many open files (raise the fd limit: ulimit -n)"
    return f"{exc.strerror or exc}"
