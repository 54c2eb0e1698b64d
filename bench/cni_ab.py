"""A/B of two podwire source trees through the C shim, interleaved.

Single runs of bench/cni_latency.py on this machine move by a third from one
minute to the next, far more than most changes to the agent. This starts two
private agents side by side (A runs the tree ``--a``, B the tree ``--b``,
each through PYTHONPATH; embedded backend, own network each) and alternates
blocks of sequential ADD/DEL pairs between them (A, B, then B, A, ...), then
alternates 8-at-once rounds, so that the machine's drift falls on both alike.
The shim is the one of this checkout for both: the A/B is of the agents.

Prints JSON: per side the sequential ADD and DEL p50/p90 over every block,
each 8-way round's pairs/s and ADD p50/p99, and B's ratios to A.

Run as root: ``.venv/bin/python bench/cni_ab.py --a /tmp/main-before --b .``
(``git worktree add /tmp/main-before <rev>`` makes a tree of an earlier rev).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import cni_latency as cl


def quantile_ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="source tree of side A")
    parser.add_argument("--b", type=Path, required=True, help="source tree of side B")
    parser.add_argument("--n", type=int, default=400, help="sequential pairs per side")
    parser.add_argument("--block", type=int, default=10, help="pairs per turn")
    parser.add_argument("--rounds", type=int, default=4, help="8-way rounds per side")
    parser.add_argument("--round-pairs", type=int, default=80)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    for side, tree in trees.items():
        if not (tree / "podwire" / "__init__.py").is_file():
            parser.error(f"--{side.lower()} {tree} is not a podwire source tree")

    result: dict[str, Any] = {
        "benchmark": "cni_ab",
        "trees": {side: str(tree) for side, tree in trees.items()},
        "load_average_at_start": list(os.getloadavg()),
    }
    namespaces = cl.Namespaces()
    tmp = Path(tempfile.mkdtemp(prefix="pw-ab-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        c_shim = cl.build_c_shim(tmp)
        if c_shim is None:
            raise SystemExit("no C shim: make shim")
        setups = {}
        saved = os.environ.get("PYTHONPATH")
        try:
            for side, tree in trees.items():
                os.environ["PYTHONPATH"] = str(tree)
                agent = cl.Agent(tmp / side, [])
                stack.callback(agent.stop)
                network, ours = cl.podwire_setups(agent, c_shim, False, prefix=side)
                stack.callback(cl._delete_network, agent, network)
                setups[side] = ours[0]
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        stack.callback(namespaces.delete_all)
        for setup in setups.values():  # warm-up: first-call costs counted nowhere
            cl.run_pairs(setup, namespaces, 4, 1)

        adds: dict[str, list[float]] = {"A": [], "B": []}
        dels: dict[str, list[float]] = {"A": [], "B": []}
        for block in range(max(1, args.n // args.block)):
            for side in ("A", "B") if block % 2 == 0 else ("B", "A"):
                cl.run_pairs(setups[side], namespaces, args.block, 1, mode="sequential")
                adds[side] += setups[side].samples[("sequential", "ADD")]
                dels[side] += setups[side].samples[("sequential", "DEL")]
        rounds: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
        for number in range(args.rounds):
            for side in ("A", "B") if number % 2 == 0 else ("B", "A"):
                run = cl.run_pairs(
                    setups[side], namespaces, args.round_pairs, args.concurrency, "concurrent"
                )
                rounds[side].append(
                    {
                        "pairs_per_s": run.get("pairs_per_s"),
                        "add_p50_ms": run.get("add", {}).get("p50_ms"),
                        "add_p99_ms": run.get("add", {}).get("p99_ms"),
                        "errors": run.get("errors"),
                    }
                )
        for side in ("A", "B"):
            result[side] = {
                "sequential_add_p50_ms": quantile_ms(adds[side], 0.5),
                "sequential_add_p90_ms": quantile_ms(adds[side], 0.9),
                "sequential_del_p50_ms": quantile_ms(dels[side], 0.5),
                "sequential_pairs": len(adds[side]),
                "concurrent_rounds": rounds[side],
                "concurrent_pairs_per_s_mean": round(
                    statistics.mean(r["pairs_per_s"] or 0 for r in rounds[side]), 1
                ),
            }
        result["b_over_a"] = {
            key: round(result["B"][key] / result["A"][key], 3)
            for key in (
                "sequential_add_p50_ms",
                "sequential_del_p50_ms",
                "concurrent_pairs_per_s_mean",
            )
            if result["A"][key]
        }
        result["load_average_at_end"] = list(os.getloadavg())
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
