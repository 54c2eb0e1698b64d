"""The latency distributions of one bench/cni_latency.py run as a PNG: one
panel per mode (one at a time, N at once) and verb (ADD, DEL), one curve per
column (podwire, the reference plugins, the kernel's floor exec'd), as
cumulative distributions on a log time axis, so that the gap between them
reads at every percentile, not only at p50 and p99."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

COLOURS = {
    "podwire_c": "tab:blue",
    "podwire_python": "tab:cyan",
    "podwire_ovn_c": "tab:purple",
    "reference": "tab:orange",
    "floor_exec": "tab:green",
}


class Column(Protocol):
    name: str
    samples: dict[tuple[str, str], list[float]]


def plot(path: Path, columns: list[Any], result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    modes = [("sequential", "one at a time"), ("concurrent", f"{result['concurrency']} at once")]
    verbs = ["ADD", "DEL"]
    fig, axes = plt.subplots(len(modes), len(verbs), figsize=(12, 8), squeeze=False)
    for row, (mode, mode_title) in enumerate(modes):
        for col, verb in enumerate(verbs):
            ax = axes[row][col]
            for column in columns:
                samples = sorted(column.samples.get((mode, verb), []))
                if not samples:
                    continue
                ms = [s * 1000 for s in samples]
                share = [(i + 1) / len(ms) for i in range(len(ms))]
                p50 = ms[max(1, math.ceil(len(ms) / 2)) - 1]  # nearest rank, as the JSON
                ax.step(
                    ms,
                    share,
                    where="post",
                    color=COLOURS.get(column.name),
                    label=f"{column.name} (p50 {p50:.1f} ms)",
                )
            ax.set_xscale("log")
            ax.set_ylim(0, 1.01)
            ax.axhline(0.5, color="grey", linewidth=0.5, linestyle=":")
            ax.axhline(0.99, color="grey", linewidth=0.5, linestyle=":")
            ax.set_title(f"{verb}, {mode_title}")
            ax.set_xlabel("latency (ms, log scale)")
            ax.set_ylabel("share of calls at most")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
    start = ", ".join(f"{x:.2f}" for x in result.get("load_average_at_start", []))
    end = ", ".join(f"{x:.2f}" for x in result.get("load_average_at_end", []))
    fig.suptitle(
        f"CNI latency, n={result['n']} pairs per mode, {result['host']['cpus']} CPUs; "
        f"load average {start} (start) / {end} (end)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
