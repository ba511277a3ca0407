"""What every benchmark shares: the machine it ran on, and timing a command as a child of its own.

A child forked straight from a benchmark would be charged the benchmark's own peak RSS (Linux folds the
pre-exec memory into ru_maxrss), so commands are started from a tiny `python -S` launcher that forks,
execs, reaps with os.wait4 and writes that child's own wall time, exit code, peak RSS and CPU time.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

_LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    out.write(f"{wall!r} {code} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime!r}")
sys.exit(code if 0 <= code < 256 else 1)
"""


@dataclass(frozen=True)
class Usage:
    wall: float  # seconds, fork to reap
    returncode: int
    maxrss_kib: int
    cpu: float  # user + system seconds of the child alone


def launch(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
) -> Usage | None:
    """Run `argv` (an executable path first) under the launcher; None if the launcher could not report."""
    with tempfile.NamedTemporaryFile(mode="r", prefix="rusage-") as usage:
        subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, usage.name, *argv],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
        fields = usage.read().split()
    if len(fields) != 4:
        return None
    return Usage(wall=float(fields[0]), returncode=int(fields[1]), maxrss_kib=int(fields[2]), cpu=float(fields[3]))


def machine(*packages: str) -> dict[str, str]:
    """CPUs this process may use, the CPU model, memory, kernel, Python and the given packages' versions."""
    model, memory = platform.processor() or "?", "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) // 1024} MiB"
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts = {
        "nproc": str(usable),
        "cpu": model,
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    facts.update({name: metadata.version(name) for name in packages})
    return facts
