"""Ask the kernel, via numactl, whether a memory policy is allowed here.

Containers without SYS_NICE refuse ``set_mempolicy``; the planner asks this
probe before choosing ``--membind`` for ``numa = "auto"`` so a refusal becomes
one warning at plan time instead of every replica dying at start.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

PROBE_TIMEOUT = 5.0


class NumactlProbe:
    """Callable ``probe(args) -> None | reason`` running ``numactl ARGS true``.

    Each distinct argument tuple runs once; the answer is cached on the
    instance (one instance per plan, so no state outlives its use).
    """

    def __init__(
        self,
        numactl: str = "numactl",
        *,
        environ: Mapping[str, str] | None = None,
        timeout: float = PROBE_TIMEOUT,
    ) -> None:
        source = os.environ if environ is None else environ
        # OMP settings of the supervisor's own environment must not shape the probe.
        self._env = {k: v for k, v in source.items() if not k.startswith("OMP_")}
        self._numactl = numactl
        self._timeout = timeout
        self._answers: dict[tuple[str, ...], str | None] = {}

    def __call__(self, args: Sequence[str]) -> str | None:
        key = tuple(args)
        if key not in self._answers:
            self._answers[key] = self._run(key)
        return self._answers[key]

    def _run(self, args: tuple[str, ...]) -> str | None:
        argv = [self._numactl, *args, "true"]
        shown = " ".join(argv)
        try:
            done = subprocess.run(
                argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=self._timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"`{shown}` did not finish within {self._timeout:g} s"
        except OSError as exc:
            return f"`{shown}` could not run: {exc.strerror or exc}"
        if done.returncode == 0:
            return None
        # numactl prints the reason first, then its usage text.
        lines = [ln.strip() for ln in done.stderr.decode("utf-8", "replace").splitlines()]
        detail = next((ln for ln in lines if ln), f"exit status {done.returncode}")
        return f"`{shown}` failed: {detail}"
