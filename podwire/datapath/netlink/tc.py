"""Traffic control over rtnetlink: a clsact qdisc and one direct-action BPF
filter on a link's ingress (the trunk data path's tag pop/push,
podwire/datapath/trunk.py)."""

from __future__ import annotations

import errno

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_DELQDISC, RTM_NEWQDISC, RTM_NEWTFILTER
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from podwire.datapath.netlink.request import NetlinkError, RtnlSocket

_TC_H_CLSACT = 0xFFFFFFF1
_TC_H_INGRESS_MIN = 0xFFFFFFF2
_CLSACT_HANDLE = 0xFFFF0000
_ETH_P_ALL_BE = 0x0300  # htons(ETH_P_ALL)
_TCA_BPF_FLAG_ACT_DIRECT = 1
# Our filter's priority and handle: one filter per link, replaced in place.
FILTER_PRIO = 0x7077
_FILTER_HANDLE = 1


class TcCalls(RtnlSocket):
    """clsact and a BPF filter on ingress."""

    def add_clsact(self, index: int) -> None:
        """A clsact qdisc on link ``index``; already there is success."""
        msg = tcmsg()
        msg["index"] = index
        msg["handle"] = _CLSACT_HANDLE
        msg["parent"] = _TC_H_CLSACT
        msg["attrs"] = [("TCA_KIND", "clsact")]
        try:
            self._request(
                msg, RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, f"clsact on {index}"
            )
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise

    def delete_clsact(self, index: int) -> bool:
        """Remove the clsact qdisc (and every filter on it); absent is
        success (False)."""
        msg = tcmsg()
        msg["index"] = index
        msg["handle"] = _CLSACT_HANDLE
        msg["parent"] = _TC_H_CLSACT
        msg["attrs"] = [("TCA_KIND", "clsact")]
        try:
            self._request(msg, RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, f"delete clsact {index}")
        except NetlinkError as exc:
            if exc.errno in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                return False
            raise
        return True

    def set_ingress_bpf(self, index: int, prog_fd: int, name: str) -> None:
        """Put (or replace, atomically) the direct-action BPF program
        ``prog_fd`` on link ``index``'s ingress; the kernel keeps its own
        reference to the program."""
        msg = tcmsg()
        msg["index"] = index
        msg["handle"] = _FILTER_HANDLE
        msg["parent"] = _TC_H_INGRESS_MIN
        msg["info"] = (FILTER_PRIO << 16) | _ETH_P_ALL_BE
        msg["attrs"] = [
            ("TCA_KIND", "bpf"),
            (
                "TCA_OPTIONS",
                {
                    "attrs": [
                        ("TCA_BPF_FD", prog_fd),
                        ("TCA_BPF_NAME", name),
                        ("TCA_BPF_FLAGS", _TCA_BPF_FLAG_ACT_DIRECT),
                    ]
                },
            ),
        ]
        self._request(
            msg,
            RTM_NEWTFILTER,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            f"BPF filter {name} on {index}",
        )
