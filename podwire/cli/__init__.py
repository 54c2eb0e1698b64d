"""The ``podwire`` command.

Where the objects live is chosen by one global option: ``--url`` (a podwire
server, with ``--token``), ``--agent-socket`` (the agent's unix socket, which
serves the same API with admin rights) or ``--state-dir`` (the embedded
backend, in this process). Without any, the agent's default socket.

Heavy modules (FastAPI, SQLAlchemy, httpx) are imported inside the commands
that use them so that ``podwire --help`` and the shell completion stay fast.
Errors are one line on stderr and exit status 1.

Each command group is one module here, registered on the group below with
one line; adding a group is adding a module and its line.
"""

from __future__ import annotations

from podwire.cli import attachments, networks, pools, ports, services, subnets, trunks, vfs
from podwire.cli.root import main
from podwire.cli.target import DEFAULT_AGENT_SOCKET, DEFAULT_PROJECT, Target

main.add_command(networks.network)
main.add_command(subnets.subnet)
main.add_command(ports.port)
main.add_command(trunks.trunk)
main.add_command(services.server)
main.add_command(services.agent)
main.add_command(attachments.attachment)
main.add_command(vfs.vf)
main.add_command(pools.pool)

__all__ = ["DEFAULT_AGENT_SOCKET", "DEFAULT_PROJECT", "Target", "main"]
