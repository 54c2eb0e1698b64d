"""Kernel constants the wrapper needs that pyroute2 does not export
(linux/netlink.h, if_link.h, if_addr.h, rtnetlink.h, ethtool.h)."""

from __future__ import annotations

CLONE_NEWNET = 0x40000000
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

IFF_UP = 0x1
# The loopback device's ifindex in every network namespace (net/core/dev.c).
LOOPBACK_IFINDEX = 1
IFA_F_NODAD = 0x02
IFA_F_TENTATIVE = 0x40
IFA_F_DADFAILED = 0x08
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

# Attribute numbers the TLV walker reads (linux/if_link.h, if_addr.h, rtnetlink.h).
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_MULTICAST = 7
IFA_FLAGS = 8
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15

SIOCETHTOOL = 0x8946
ETHTOOL_GLINK = 0x0A
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_STXCSUM = 0x17
