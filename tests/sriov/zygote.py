"""Runs in the test guest: starts agents fast, by forking.

Importing the agent's modules over 9p under TCG takes 30-60 s, and the
crash walk starts an agent per crash point. This process imports them once;
each line written to its FIFO (JSON: argv, env, log) forks a child that
becomes a fresh ``python -m podwire.daemon`` process (its own pid, session,
environment and start-up reconcile; ``kill -9`` kills it like any agent).
The child's pid goes to the file named in the request.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys

PRELOAD = (
    "podwire.daemon.__main__",
    "podwire.daemon.run",
    "podwire.daemon.app",
    "podwire.agent.core",
    "podwire.frontends.cni.handler",
    "podwire.backends.registry",
    "podwire.backends.embedded",
    "podwire.api",
    "podwire.kinds.veth_bridge",
    "podwire.kinds.veth_ovs",
    "podwire.kinds.sriov",
    "podwire.kinds.faulty",
    "podwire.datapath.veth_bridge",
    "podwire.datapath.sriov.driver",
    "podwire.frontends.docker.app",
    "podwire.daemon.docker",
    "uvicorn",
)


def main(fifo: str) -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # the agent imports what it needs anyway
            print(f"zygote: {name}: {exc}", file=sys.stderr)
    # Children are reaped by the kernel; a child resets this before running.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("zygote: ready", flush=True)
    while True:
        with open(fifo) as requests:
            for line in requests:
                if line.strip():
                    spawn(json.loads(line))


def spawn(req: dict[str, object]) -> None:
    pid = os.fork()
    if pid:
        with open(str(req["pidfile"]) + ".tmp", "w") as f:
            f.write(str(pid))
        os.rename(str(req["pidfile"]) + ".tmp", str(req["pidfile"]))
        return
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        log = os.open(str(req["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        env = req.get("env") or {}
        assert isinstance(env, dict)
        os.environ.pop("PODWIRE_FAULTS", None)
        os.environ.update({str(k): str(v) for k, v in env.items()})
        # The plan is read at first use: this process's, not the zygote's.
        importlib.import_module("podwire.faults").reset()
        argv = req["argv"]
        assert isinstance(argv, list)
        sys.argv = ["python -m podwire.daemon", *map(str, argv)]
        entry = importlib.import_module("podwire.daemon.__main__")
        code = entry.main([str(a) for a in argv])
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1])
