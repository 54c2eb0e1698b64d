"""Routes over rtnetlink (the main table)."""

from __future__ import annotations

import socket

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETROUTE, RTM_NEWROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from podwire.datapath.netlink import encode
from podwire.datapath.netlink.constants import RT_TABLE_MAIN
from podwire.datapath.netlink.replies import RouteEntry, parse_route
from podwire.datapath.netlink.request import RtnlSocket


class RouteCalls(RtnlSocket):
    """Routes of the main table."""

    def add_route(self, index: int, destination: str, gateway: str | None) -> None:
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        self._request_body(
            encode.add_route(index, destination, gateway),
            RTM_NEWROUTE,
            flags,
            f"add route {destination} via {gateway or 'link'}",
        )

    def add_routes(self, index: int, routes: list[tuple[str, str | None]]) -> None:
        """``add_route`` of each (destination, gateway), in one send."""
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        self._request_batch(
            [
                (
                    encode.add_route(index, destination, gateway),
                    RTM_NEWROUTE,
                    flags,
                    f"add route {destination} via {gateway or 'link'}",
                )
                for destination, gateway in routes
            ]
        )

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
