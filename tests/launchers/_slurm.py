"""A local one-node Slurm cluster for the launcher tests, owned by the test session.

munged, slurmctld and slurmd run in the foreground as children of pytest, with
every file (config, keys, state, spool, logs, pid files) in one temporary
directory, on free ports, under a node name of their own; nothing in /etc is
touched, so a cluster started by someone else on this machine is never
disturbed. Clients find this cluster through ``SLURM_CONF`` in ``env()``.

Two plugin sets, because Slurm signals differently under each:
``linuxproc`` (proctrack/linuxproc + task/affinity: every process of a step
gets the signal) and ``cgroup`` (proctrack/cgroup + task/cgroup,task/affinity:
only the step's tasks get signals other than SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("munge", "slurmd", "slurmctld", "slurm-client")
BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "srun", "sbatch", "scancel",
            "scontrol", "sinfo", "squeue")
NODE = "pvnode"
MODES = ("linuxproc", "cgroup")
KILL_WAIT = 10


class SlurmUnavailable(Exception):
    """Slurm's packages are missing and cannot be installed here: a reason to skip."""


def ensure_installed() -> None:
    """Install the Debian packages when a binary is missing (root with apt-get only)."""
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SlurmUnavailable(
            f"Slurm is not installed and cannot be (need root and apt-get): {' '.join(PACKAGES)}"
        )
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q",
           "--no-install-recommends", *PACKAGES]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SlurmUnavailable(
            f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-300:]}"
        )


def cgroup_usable() -> str:
    """'' when Slurm's cgroup plugins can work here, else why not."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        if "cpuset" not in (root / "cgroup.controllers").read_text().split():
            return "cgroup v2 without the cpuset controller"
        probe = root / f"pv-slurm-probe-{os.getpid()}"
    else:
        if not (root / "cpuset").is_dir() or not (root / "freezer").is_dir():
            return "no cgroup v1 cpuset and freezer hierarchies"
        probe = root / "cpuset" / f"pv-slurm-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return f"cannot create a cgroup ({exc.strerror})"
    return ""


def _remove_cgroups() -> None:
    """Remove the (empty) cgroups slurmd made for this node, deepest first."""
    for top in Path("/sys/fs/cgroup").glob(f"*/slurm_{NODE}"):
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hardware() -> dict[str, int]:
    line = subprocess.run(
        [_sbin("slurmd"), "-C"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    found = {k: int(m.group(1)) for k in keys if (m := re.search(rf"\b{k}=(\d+)", line))}
    if len(found) != len(keys):
        raise RuntimeError(f"cannot read the node's hardware from 'slurmd -C': {line}")
    return found


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class LocalSlurm:
    """One cluster; ``start(mode)`` (re)starts the Slurm daemons with that plugin set."""

    root: Path
    mode: str = ""
    ctld_port: int = field(default_factory=_free_port)
    slurmd_port: int = field(default_factory=_free_port)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.sock"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for Slurm clients (srun, sbatch, ...) that talks to this cluster."""
        env = dict(os.environ if base is None else base)
        for key in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            del env[key]
        env["SLURM_CONF"] = str(self.conf)
        return env

    # -- munge ----------------------------------------------------------------

    def start_munge(self) -> None:
        d = self.root / "munge"
        d.mkdir(mode=0o755, parents=True, exist_ok=True)
        d.chmod(0o755)  # munged wants its socket's directory searchable by everyone
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn(
            "munged",
            [_sbin("munged"), "--foreground", "--force", f"--socket={self.munge_socket}",
             f"--key-file={key}", f"--pid-file={d / 'munged.pid'}",
             f"--log-file={d / 'munged.log'}", f"--seed-file={d / 'munged.seed'}"],
            d / "munged.log",
        )
        self._wait(lambda: self._munge_answers(), 20, "munged to answer", d / "munged.log")

    def _munge_answers(self) -> bool:
        enc = subprocess.run(["munge", "-S", str(self.munge_socket), "-n"],
                             capture_output=True, check=False)
        if enc.returncode != 0:
            return False
        dec = subprocess.run(["unmunge", "-S", str(self.munge_socket)], input=enc.stdout,
                             capture_output=True, check=False)
        return dec.returncode == 0

    # -- slurm ----------------------------------------------------------------

    def write_config(self, mode: str) -> None:
        hw = _hardware()
        host = socket.gethostname().split(".")[0]
        r = self.root
        for sub in ("etc", "state", "spool", "log", "run"):
            (r / sub).mkdir(exist_ok=True)
        if mode == "cgroup":
            proctrack, task = "proctrack/cgroup", "task/cgroup,task/affinity"
        else:
            proctrack, task = "proctrack/linuxproc", "task/affinity"
        mem = hw["RealMemory"] * 95 // 100  # a node reporting a bit less is not drained
        self.conf.write_text(
            "\n".join([
                "ClusterName=pvtest",
                f"SlurmctldHost={host}(127.0.0.1)",
                f"SlurmctldPort={self.ctld_port}",
                f"SlurmdPort={self.slurmd_port}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={self.munge_socket}",
                "MpiDefault=none",
                "MailProg=/bin/true",
                f"ProctrackType={proctrack}",
                f"TaskPlugin={task}",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "SchedulerType=sched/backfill",
                "ReturnToService=2",
                f"KillWait={KILL_WAIT}",
                "MinJobAge=300",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "JobCompType=jobcomp/filetxt",
                f"JobCompLoc={r / 'log' / 'jobcomp.log'}",
                f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
                f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
                f"StateSaveLocation={r / 'state'}",
                f"SlurmdSpoolDir={r / 'spool'}",
                f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
                "SlurmctldDebug=info",
                "SlurmdDebug=info",
                f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={hw['CPUs']} "
                f"Boards={hw['Boards']} SocketsPerBoard={hw['SocketsPerBoard']} "
                f"CoresPerSocket={hw['CoresPerSocket']} ThreadsPerCore={hw['ThreadsPerCore']} "
                f"RealMemory={mem} State=UNKNOWN",
                f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
                "",
            ])
        )
        cgconf = self.conf.parent / "cgroup.conf"  # Slurm reads it next to slurm.conf
        cgconf.write_text(
            "CgroupPlugin=autodetect\nConstrainCores=yes\nConstrainRAMSpace=no\n"
            "ConstrainSwapSpace=no\nConstrainDevices=no\n"
        )

    def start(self, mode: str, timeout: float = 30) -> None:
        """(Re)start slurmctld and slurmd with ``mode``'s plugins; return once the node is idle."""
        if mode == self.mode and all(self._alive(n) for n in ("slurmctld", "slurmd")):
            return
        self.stop_slurm()
        self.write_config(mode)
        log = self.root / "log"
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)],
                    log / "slurmctld.log")
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)],
                    log / "slurmd.log")
        self.mode = mode
        self._wait(self._node_idle, timeout, f"node {NODE} to be idle ({mode})",
                   log / "slurmctld.log", log / "slurmd.log")

    def _node_idle(self) -> bool:
        for name in ("slurmctld", "slurmd"):
            if not self._alive(name):
                raise RuntimeError(f"{name} exited with {self._procs[name].returncode}")
        st = self.run(["sinfo", "-h", "-n", NODE, "-o", "%t"], check=False).stdout.strip()
        if st.startswith(("down", "drain")):
            self.run(["scontrol", "update", f"nodename={NODE}", "state=resume"], check=False)
        return st == "idle"

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 30,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster."""
        return subprocess.run(argv, capture_output=True, text=True, check=check,
                              timeout=timeout, env=self.env(env))

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as key=value pairs (kept for MinJobAge after the end)."""
        out = self.run(["scontrol", "-o", "show", "job", job_id]).stdout
        return {m.group(1): m.group(2) for m in re.finditer(r"(\w+)=(\S*)", out)}

    def jobs(self) -> list[str]:
        return self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.split()

    def cancel_all(self, timeout: float = KILL_WAIT + 10) -> None:
        ids = self.jobs()
        if ids:
            self.run(["scancel", *ids], check=False)
            self._wait(lambda: not self.jobs(), timeout, "every job to end")

    def stop_slurm(self) -> None:
        if self._alive("slurmctld") and self._alive("slurmd"):
            self.cancel_all()
        for name in ("slurmd", "slurmctld"):
            self._stop(name)

    def stop(self) -> None:
        try:
            self.stop_slurm()
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                self._stop(name)
            _remove_cgroups()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}:\n{_tail(p)}"
            for p in (self.root / "log" / "slurmctld.log", self.root / "log" / "slurmd.log")
        )

    # -- processes ------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], log: Path) -> None:
        out = open(self.root / f"{name}.stdout", "ab")  # noqa: SIM115 - the child keeps it
        with out:
            self._procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.env(), start_new_session=True,
            )

    def _alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def _stop(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _wait(self, cond: Callable[[], bool], timeout: float, what: str, *logs: Path) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p}:\n{_tail(p)}" for p in logs)
                raise RuntimeError(f"local Slurm: timed out after {timeout} s waiting for "
                                   f"{what}\n{tails}")
            time.sleep(0.1)
