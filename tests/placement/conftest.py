"""Fixtures for placement tests: the runtimes' report programs, built once per session."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import pytest

from tests.placement._runs import BLAS_REPORT, HERE, Runtime

# The OpenMP runtime each compiler links with -fopenmp, as dladdr names its library.
COMPILERS = {"libgomp": ("gcc", "libgomp"), "libomp": ("clang", "libomp")}
RUNTIMES = ("libgomp", "libomp", "openblas")
_APT = "apt-get install -y gcc clang libomp-dev (all listed in .ci/apt-packages)"


@pytest.fixture(scope="session")
def build_omp(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Runtime]:
    """``build_omp("libgomp" | "libomp")``: omp_report.c compiled once per session."""
    built: dict[str, Runtime] = {}
    out = tmp_path_factory.mktemp("omp_report")

    def build(name: str) -> Runtime:
        if name in built:
            return built[name]
        compiler, library = COMPILERS[name]
        if shutil.which(compiler) is None:
            pytest.skip(f"{compiler} is not installed, so {name} cannot be tested: {_APT}")
        exe = out / f"omp_report_{compiler}"
        done = subprocess.run(
            [compiler, "-O1", "-fopenmp", str(HERE / "omp_report.c"), "-o", str(exe), "-ldl"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        # A compiler without its OpenMP runtime (clang without libomp-dev) is a broken
        # install, not a reason to skip: CI installs both.
        assert done.returncode == 0, f"{compiler} -fopenmp failed ({_APT}):\n{done.stderr}"
        built[name] = Runtime(name=name, argv=(str(exe),), library=library)
        return built[name]

    return build


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest, build_omp: Callable[[str], Runtime]) -> Runtime:
    """Each runtime of the matrix: GNU libgomp, LLVM libomp, NumPy's OpenBLAS."""
    name: str = request.param
    if name == "openblas":
        return Runtime(name=name, argv=BLAS_REPORT, library="openblas")
    return build_omp(name)
