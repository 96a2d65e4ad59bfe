"""Readers for ``lscpu -Je`` JSON and ``lscpu -p`` CSV dumps, in every form seen in the wild."""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Mapping
from pathlib import Path

from .errors import TopologyError
from .model import RawCpu, Topology, build

# util-linux 2.39 prints a missing value as a bare ``-`` (issue #3430): not JSON.
_BARE_DASH = re.compile(r'(":\s*)-(\s*[,}\]])')
_TRUE = {"yes", "y", "true", "1"}
_FALSE = {"no", "n", "false", "0"}


def _int_field(value: object, what: str) -> int | None:
    """An id given as a number or a string; ``None``/``"-"``/``""``/negative mean unknown."""
    if type(value) is int:  # the common case first: this runs per CPU
        return value if value >= 0 else None
    if value is None or value in ("-", ""):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise TopologyError(f"{what} is {value!r}, expected an integer")


def _online_field(value: object, what: str) -> bool:
    if value is None or value is True:
        return True
    if value is False:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TopologyError(f"{what} is {value!r}, expected yes/no or true/false")


def _is_cache_column(name: str) -> bool:
    """``l1d:l1i:l2:l3`` (``lscpu -e``'s cache column, named by the caches it has)."""
    parts = name.lower().split(":")
    return len(parts) > 1 and all(p[:1] == "l" and p[1:2].isdigit() for p in parts)


def _llc_field(value: object, socket: int | None, what: str) -> Hashable | None:
    """The last id of ``0:0:0:0`` (the caches come in ascending level), keyed by socket so
    ids counted per socket never merge two sockets' caches; ``-``/missing: unknown."""
    if value is None:
        return None
    last = str(value).rpartition(":")[2].strip()
    if last in ("-", ""):
        return None
    if not last.isdigit():
        raise TopologyError(f"{what} is {value!r}, expected cache ids like '0:0:0:0'")
    return ("llc", socket, int(last))


def _raw_cpu(index: int, entry: Mapping[str, object], cache: str | None = None) -> RawCpu:
    cpu = _int_field(entry.get("cpu", index), "field 'cpu'")
    if cpu is None:
        raise TopologyError("has no CPU number")
    core = _int_field(entry.get("core"), "field 'core'")
    socket = _int_field(entry.get("socket"), "field 'socket'")
    node = _int_field(entry.get("node"), "field 'node'")
    # lscpu core ids are machine-wide already; without one, a CPU is its own core.
    key: Hashable = ("core", core) if core is not None else ("cpu", cpu)
    online = _online_field(entry.get("online"), "field 'online'")
    llc = None if cache is None else _llc_field(entry.get(cache), socket, f"field {cache!r}")
    return RawCpu(cpu, key, socket or 0, node or 0, online, llc)


def from_json(data: str | bytes | Mapping[str, object], source: str = "lscpu -Je") -> Topology:
    """Build a topology from ``lscpu -Je`` output, repairing the bare-dash bug."""
    if not isinstance(data, Mapping):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        try:
            parsed: object = json.loads(text)
        except json.JSONDecodeError:
            try:
                parsed = json.loads(_BARE_DASH.sub(r"\1null\2", text))
            except json.JSONDecodeError as exc:
                raise TopologyError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(parsed, Mapping):
            raise TopologyError(f"{source}: expected a JSON object with a 'cpus' list")
        data = parsed
    entries = data.get("cpus")
    if not isinstance(entries, list):
        hint = " (this is `lscpu -J` summary output)" if "lscpu" in data else ""
        raise TopologyError(
            f"{source}: no 'cpus' list{hint}; produce the dump with `lscpu -Je`"
        )
    raws = []
    first = entries[0] if entries and isinstance(entries[0], Mapping) else {}
    cache = next((str(k) for k in first if _is_cache_column(str(k))), None)
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise TopologyError(f"{source}: CPU entry {index} is not an object")
        try:
            raws.append(_raw_cpu(index, entry, cache))
        except TopologyError as exc:
            raise TopologyError(f"{source}: CPU entry {index} {exc}") from None
    return build(raws, source)


def from_csv(text: str, source: str = "lscpu -p") -> Topology:
    """Build a topology from ``lscpu -p`` output (columns named by its ``# CPU,...`` header)."""
    lines = text.splitlines()
    columns = ["cpu", "core", "socket", "node"]
    start = 0
    for number, line in enumerate(lines):
        if line.startswith("#") and line[1:].strip().lower().startswith("cpu,"):
            columns = [name.strip().lower() for name in line[1:].split(",")]
            start = number + 1
    levels = [name for name in columns if name[:1] == "l" and name[1:2].isdigit()]
    cache = max(levels, key=lambda name: int(name[1:2]), default=None)
    raws = []
    for number, line in enumerate(lines[start:], start + 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = dict(zip(columns, line.split(","), strict=False))
        where = f"{source}: line {number}"
        if "cpu" not in fields or not fields["cpu"].strip().isdigit():
            raise TopologyError(
                f"{where}: {line.strip()[:60]!r} is not an `lscpu -p` row; "
                "expected `lscpu -Je` JSON or `lscpu -p` CSV"
            )
        cpu = int(fields["cpu"])
        core = _int_field(fields.get("core"), f"{where} column Core")
        socket = _int_field(fields.get("socket"), f"{where} column Socket")
        node = _int_field(fields.get("node"), f"{where} column Node")
        online = _online_field(fields.get("online"), f"{where} column Online")
        key: Hashable = ("core", core) if core is not None else ("cpu", cpu)
        llc = None if cache is None else _llc_field(fields.get(cache), socket, f"{where} {cache}")
        raws.append(RawCpu(cpu, key, socket or 0, node or 0, online, llc))
    if not raws:
        raise TopologyError(f"{source}: no CPU rows; expected `lscpu -Je` JSON or `lscpu -p` CSV")
    return build(raws, source)


def from_file(path: Path) -> Topology:
    """Read a dump, JSON if it starts with ``{``, else ``lscpu -p`` CSV."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if text.lstrip().startswith(("{", "[")):
        return from_json(text, source=str(path))
    return from_csv(text, source=str(path))
