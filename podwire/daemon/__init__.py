"""The composition root: the one process that serves the agent, its doors
and the API on the agent's sockets (``podwire agent``, ``python -m
podwire.daemon``).

It is the room above agent/, frontends/ and api/: it imports them; none of
them imports it.

* run.py      run_agent: reconcile, serve, stop cleanly
* app.py      the agent's HTTP API (/v1 local routes, the CNI transport,
              /v2.0 through podwire.api)
* docker.py   the Docker plugin socket beside it (frontends/docker's app)
* sockets.py  unix sockets bound 0600, the state-dir lock
"""

from __future__ import annotations

from podwire.daemon.run import run_agent

__all__ = ["run_agent"]
