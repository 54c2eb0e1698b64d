"""Routes over rtnetlink (the main table)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETROUTE, RTM_NEWROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from podwire.datapath.netlink.constants import (
    RT_SCOPE_LINK,
    RT_TABLE_MAIN,
    RTN_UNICAST,
    RTPROT_STATIC,
)
from podwire.datapath.netlink.replies import RouteEntry, parse_route
from podwire.datapath.netlink.request import RtnlSocket


class RouteCalls(RtnlSocket):
    """Routes of the main table."""

    def add_route(self, index: int, destination: str, gateway: str | None) -> None:
        net = ipaddress.ip_network(destination, strict=False)
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        msg = rtmsg()
        msg["family"] = family
        msg["dst_len"] = net.prefixlen
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_STATIC
        msg["type"] = RTN_UNICAST
        # An IPv4 route without a gateway is on-link (a host route to a
        # neighbour that is not in the subnet); IPv6 routes are universe.
        msg["scope"] = RT_SCOPE_LINK if gateway is None and family == socket.AF_INET else 0
        attrs: list[tuple[str, Any]] = [("RTA_OIF", index)]
        if net.prefixlen:
            attrs.append(("RTA_DST", str(net.network_address)))
        if gateway:
            attrs.append(("RTA_GATEWAY", gateway))
        msg["attrs"] = attrs
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        self._request(msg, RTM_NEWROUTE, flags, f"add route {destination} via {gateway or 'link'}")

    def routes(self, index: int | None = None) -> list[RouteEntry]:
        out: list[RouteEntry] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            msg = rtmsg()
            msg["family"] = family
            msg["table"] = RT_TABLE_MAIN
            replies = self._request(msg, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, "list routes")
            for data, mtype, a, b in replies:
                if mtype != RTM_NEWROUTE:
                    continue
                route = parse_route(data, a, b)
                if route.table == RT_TABLE_MAIN and (index is None or route.oif == index):
                    out.append(route)
        return out
