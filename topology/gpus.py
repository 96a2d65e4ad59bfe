"""Find visible GPUs and their NUMA nodes in sysfs PCI devices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import TopologyError

_VENDORS = {"0x10de": ("NVIDIA", "CUDA_VISIBLE_DEVICES"), "0x1002": ("AMD", "HIP_VISIBLE_DEVICES")}


@dataclass(frozen=True, slots=True)
class Gpu:
    """A visible GPU: ``index`` as the runtime numbers it, ``node`` its NUMA node."""

    index: int
    address: str
    vendor: str
    node: int


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _visible(count: int, variable: str, environ: Mapping[str, str]) -> list[int]:
    value = environ.get(variable)
    if value is None:
        return list(range(count))
    picked = []
    for token in (t.strip() for t in value.split(",")):
        if not token:
            continue
        if not token.isdigit():
            if token.startswith("-"):
                break  # the runtimes stop at the first invalid id, e.g. "-1" hides all
            raise TopologyError(
                f"{variable}={value!r}: {token!r} is not a GPU index; use indices like 0,1"
            )
        if int(token) >= count:
            raise TopologyError(f"{variable}={value!r}: GPU {token} does not exist ({count} found)")
        picked.append(int(token))
    return picked


def visible_gpus(sysfs_root: Path, environ: Mapping[str, str]) -> list[Gpu]:
    """Display controllers from NVIDIA/AMD in PCI address order, filtered per vendor's env var."""
    devices = sysfs_root / "bus/pci/devices"
    try:
        addresses = sorted(entry.name for entry in devices.iterdir())
    except OSError:
        return []
    by_vendor: dict[str, list[tuple[str, Path]]] = {v: [] for v in _VENDORS}
    for address in addresses:
        path = devices / address
        vendor = _read(path / "vendor").lower()
        if vendor in _VENDORS and _read(path / "class").lower().startswith("0x03"):
            by_vendor[vendor].append((address, path))
    gpus = []
    for vendor, found in by_vendor.items():
        name, variable = _VENDORS[vendor]
        for index in _visible(len(found), variable, environ):
            address, path = found[index]
            text = _read(path / "numa_node")
            node = int(text) if text.lstrip("-").isdigit() else -1
            if node < 0:
                raise TopologyError(
                    f"{name} GPU {index} ({address}): NUMA node unknown "
                    f"({path / 'numa_node'} is {text or 'missing'!r}); "
                    "use strategy 'nodes' or give CPU lists with 'cpus'"
                )
            gpus.append(Gpu(index, address, name, node))
    return gpus
