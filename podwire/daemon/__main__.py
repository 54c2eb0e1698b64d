"""``python -m podwire.daemon``: the agent process without the CLI (tests,
debugging). ``podwire agent`` (podwire/cli.py) is the user-facing command;
both call run_agent with the same Config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from podwire.config import load_config
from podwire.errors import PodwireError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podwire.daemon")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--socket", type=Path)
    parser.add_argument("--backend")
    parser.add_argument("--host-id")
    parser.add_argument("--max-in-flight", type=int)
    parser.add_argument("--max-queued", type=int)
    parser.add_argument("--db-url")
    parser.add_argument("--metrics-address", help="serve /metrics on HOST:PORT too")
    parser.add_argument("--remote-url", help="backend remote: http(s)://HOST:PORT or unix:///PATH")
    args = parser.parse_args(argv)
    try:
        config = load_config(
            args.config,
            state_dir=args.state_dir,
            backend=args.backend,
            host_id=args.host_id,
            **{
                "agent.socket": args.socket,
                "agent.max_in_flight": args.max_in_flight,
                "agent.max_queued": args.max_queued,
                "embedded.db_url": args.db_url,
                "remote.url": args.remote_url,
                "metrics.address": args.metrics_address,
            },
        )
        from podwire.daemon.run import run_agent

        run_agent(config)
    except PodwireError as exc:
        print(f"podwire agent: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
