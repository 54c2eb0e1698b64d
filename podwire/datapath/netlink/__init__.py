"""The one small pyroute2 wrapper: rtnetlink in any network namespace.

Why not pyroute2's ``IPRoute``/``IPRoute(netns=...)``: in pyroute2 0.9 the
sync API runs an asyncio loop per thread (about 0.5 ms per request on this
machine) and ``netns=`` forks a child process to open each socket (11-17 ms).
An ADD must cost a few ms in all, so this module keeps pyroute2's message
classes (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``) to *encode* requests, and
does the socket I/O itself: one blocking ``AF_NETLINK`` socket per call
(10 us to open), a request, and a loop that reads replies up to the ACK.
Replies are parsed by a tiny TLV walker that reads only the attributes
podwire needs (pyroute2's full decode of one link is ~160 us).

Sockets in another namespace are opened without ``setns()`` on a serving
thread: a short-lived thread enters the namespace, creates the socket and
exits (a socket stays in the namespace it was created in, whichever thread
uses it later). The thread never serves anything else and never goes back,
so a failed return to the host namespace cannot poison a worker.

Every socket here belongs to one call (one ``Rtnl``): nothing is shared
between threads, so drivers may call this concurrently.

The modules: netns.py (namespaces, the worker thread, sockets opened there),
request.py (the request/response loop, NetlinkError), replies.py (the TLV
walker), links.py, addresses.py and routes.py (the calls, composed into Rtnl
in rtnl.py), sysctl.py and ethtool.py. The public names are re-exported here.
"""

from podwire.datapath.netlink.addresses import solicited_node
from podwire.datapath.netlink.ethtool import get_tx_checksum, set_tx_checksum
from podwire.datapath.netlink.netns import Netns, NetnsError, run_in_netns
from podwire.datapath.netlink.replies import Address, Link, RouteEntry
from podwire.datapath.netlink.request import NetlinkError
from podwire.datapath.netlink.rtnl import Rtnl, rtnl
from podwire.datapath.netlink.sysctl import write_sysctl, write_sysctls

__all__ = [
    "Address",
    "Link",
    "NetlinkError",
    "Netns",
    "NetnsError",
    "RouteEntry",
    "Rtnl",
    "get_tx_checksum",
    "rtnl",
    "run_in_netns",
    "set_tx_checksum",
    "solicited_node",
    "write_sysctl",
    "write_sysctls",
]
