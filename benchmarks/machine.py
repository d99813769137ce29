"""What machine a benchmark ran on, written beside every result so numbers are never quoted bare."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_machine() -> dict:
    """CPU, cores, memory, GPU, Python and commit: enough to know whether two numbers compare."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpu": _gpu(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git_commit(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_result(name: str, result: dict) -> Path:
    """Write `benchmarks/results/<name>.json` with the machine description under `machine`."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": describe_machine(), **result}, indent=2) + "\n")
    return path


RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def append_results_md(title: str, command: str, result: dict, keys: list[str]) -> Path:
    """Append one dated section to benchmarks/RESULTS.md: the command, the machine, the figures."""
    machine = describe_machine()
    lines = [
        f"\n## {title}: {machine['measured_at']}\n",
        f"`{command}` (commit {machine['commit']}; {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, GPU: {machine['gpu'] or 'none'}; Python {machine['python']}"
        + "".join(f", {name} {version}" for name, version in (result.get("versions") or {}).items()) + ")\n",
        "| figure | value |", "|---|---|",
        *(f"| {key} | {result[key]} |" for key in keys if key in result),
    ]
    if not RESULTS_MD.exists():
        RESULTS_MD.write_text("# Benchmark results\n\nEvery run of an `iotlm bench` command appends a section "
                              "(newest last). Ratios come from one run, side by side.\n")
    with RESULTS_MD.open("a") as out:
        out.write("\n".join(lines) + "\n")
    return RESULTS_MD
