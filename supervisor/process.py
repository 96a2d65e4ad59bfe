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
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import psutil

#: The exec wrapper that arms the parent-death signal, resolved once.
_SETPRIV: str | None = shutil.which("setpriv")
_PDEATH_SHIM = (
    "import ctypes,os,sys;"
    "ctypes.CDLL(None,use_errno=True).prctl(1,9,0,0,0);"
    "os.getppid()==int(sys.argv[1]) or os._exit(1);"
    "os.execvp(sys.argv[2],sys.argv[2:])"
)


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
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        known = {p.pid for p in self.descendants}
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
            status = await anyio.to_thread.run_sync(
                _reap, self.pid, True, abandon_on_cancel=True
            )
            assert status is not None
        self.returncode = status
        self.popen.returncode = status
        self.close_pidfd()
        return status

    def close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


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


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    user: str | None = None,
    group: str | None = None,
    umask: int | None = None,
) -> Child:
    """Start ``argv`` under the parent-death wrapper in a new session."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    full = [*pdeathsig_prefix(), *argv]
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
                user=user,
                group=group,
                umask=-1 if umask is None else umask,
            )
        finally:
            os.close(out_w)
            os.close(err_w)
    except OSError as exc:
        os.close(out_r)
        os.close(err_r)
        raise SpawnError(exc.errno or 0, _spawn_reason(exc, argv, cwd)) from exc
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    try:
        pidfd: int | None = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        pidfd = None
    return Child(pid=popen.pid, stdout=out_r, stderr=err_r, pidfd=pidfd, popen=popen)


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
