"""VF settings through the PF, over rtnetlink (pyroute2's message classes,
the socket I/O of podwire.datapath.netlink, as everywhere in the data path).

``vf_states`` reads what ``ip link show PF`` shows for each VF; ``set_vf``
changes one setting per request, so a driver refusing one is named
precisely in the error; ``known_limit`` adds what the driver's source says
about it (igb: no VF link-state control, no min_tx_rate, a max_tx_rate only
on the 82576 with its PF link up).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from podwire.datapath.netlink import NetlinkError, Rtnl

RTEXT_FILTER_VF = 1
LINK_STATES = {"auto": 0, "enable": 1, "disable": 2}
LINK_STATE_NAMES = {v: k for k, v in LINK_STATES.items()}


@dataclass(frozen=True)
class VfState:
    """A VF's settings as its PF reports them."""

    mac: str
    vlan: int = 0
    qos: int = 0
    spoofchk: bool | None = None
    trust: bool | None = None
    min_tx_rate: int = 0
    max_tx_rate: int = 0
    link_state: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class VfSettingRefused(Exception):
    def __init__(self, setting: str, exc: NetlinkError) -> None:
        super().__init__(f"{setting}: {exc.strerror or exc}")
        self.setting = setting
        self.exc = exc


# What a PF driver's own source says about a VF setting it refuses
# (drivers/net/ethernet/intel/igb/igb_main.c, Linux 6.1): igb's net_device_ops
# have no ndo_set_vf_link_state (the kernel answers EOPNOTSUPP), and
# igb_ndo_set_vf_bw returns EINVAL for any min_tx_rate, EOPNOTSUPP on a MAC
# other than the 82576, and EINVAL for a max_tx_rate while the PF link is down
# or above the link speed (100 or 1000 Mb/s).
KNOWN_LIMITS: dict[tuple[str, str], str] = {
    ("igb", "link_state"): "igb has no VF link-state control",
    ("igb", "min_tx_rate"): "igb has no min_tx_rate (a VF minimum rate)",
    ("igb", "max_tx_rate"): (
        "igb limits a VF's max_tx_rate only on the 82576, only while the PF link "
        "is up, and to at most the link speed in Mb/s"
    ),
}


def known_limit(driver: str, setting: str, settings: dict[str, Any]) -> str | None:
    """The driver's known limit behind a refused setting, if any. A rate
    request carries both rates: a non-zero min_tx_rate is what igb refuses
    first."""
    if setting == "min/max_tx_rate":
        setting = "min_tx_rate" if settings.get("min_tx_rate") else "max_tx_rate"
    return KNOWN_LIMITS.get((driver, setting))


def vf_states(host: Rtnl, pf_index: int) -> dict[int, VfState]:
    msg = ifinfmsg()
    msg["index"] = pf_index
    msg["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_VF)]
    replies = host._request(msg, RTM_GETLINK, NLM_F_REQUEST, f"read VFs of link {pf_index}")
    out: dict[int, VfState] = {}
    for data, _mtype, start, end in replies:
        reply = ifinfmsg(data[start - 16 : end])
        reply.decode()
        vflist = reply.get_attr("IFLA_VFINFO_LIST")
        if vflist is None:
            continue
        for info in vflist.get_attrs("IFLA_VF_INFO"):
            mac = info.get_attr("IFLA_VF_MAC")
            if mac is None:
                continue
            vlan = info.get_attr("IFLA_VF_VLAN") or {}
            rate = info.get_attr("IFLA_VF_RATE") or {}
            spoof = info.get_attr("IFLA_VF_SPOOFCHK")
            trust = info.get_attr("IFLA_VF_TRUST")
            state = info.get_attr("IFLA_VF_LINK_STATE")
            # The kernel reports -1 (as unsigned) for settings a driver lacks.
            spoof_v = spoof["spoofchk"] if spoof is not None else None
            trust_v = trust["trust"] if trust is not None else None
            out[mac["vf"]] = VfState(
                mac=mac["mac"],
                vlan=vlan.get("vlan", 0),
                qos=vlan.get("qos", 0),
                spoofchk=None if spoof_v in (None, 0xFFFFFFFF) else bool(spoof_v),
                trust=None if trust_v in (None, 0xFFFFFFFF) else bool(trust_v),
                min_tx_rate=rate.get("min_tx_rate", 0),
                max_tx_rate=rate.get("max_tx_rate", 0),
                link_state=LINK_STATE_NAMES.get(
                    state["link_state"] if state is not None else 0, "auto"
                ),
            )
    return out


def _set(host: Rtnl, pf_index: int, vf: int, what: str, attr: tuple[str, dict[str, Any]]) -> None:
    msg = ifinfmsg()
    msg["index"] = pf_index
    name, value = attr
    info = {"attrs": [(name, {"vf": vf, **value})]}
    msg["attrs"] = [("IFLA_VFINFO_LIST", {"attrs": [("IFLA_VF_INFO", info)]})]
    try:
        host._request(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, f"set VF {vf} {what}")
    except NetlinkError as exc:
        raise VfSettingRefused(what, exc) from exc


def set_vf(host: Rtnl, pf_index: int, vf: int, **settings: Any) -> None:
    """Apply the given settings (mac, vlan with qos, spoofchk, trust,
    min/max_tx_rate, link_state) one request each, in that order."""
    if "mac" in settings:
        _set(host, pf_index, vf, "mac", ("IFLA_VF_MAC", {"mac": settings["mac"]}))
    if "vlan" in settings or "qos" in settings:
        vlan = {"vlan": settings.get("vlan", 0), "qos": settings.get("qos", 0)}
        _set(host, pf_index, vf, "vlan", ("IFLA_VF_VLAN", vlan))
    if settings.get("spoofchk") is not None:
        value = {"spoofchk": int(settings["spoofchk"])}
        _set(host, pf_index, vf, "spoofchk", ("IFLA_VF_SPOOFCHK", value))
    if settings.get("trust") is not None:
        _set(host, pf_index, vf, "trust", ("IFLA_VF_TRUST", {"trust": int(settings["trust"])}))
    if "min_tx_rate" in settings or "max_tx_rate" in settings:
        rate = {
            "min_tx_rate": settings.get("min_tx_rate", 0),
            "max_tx_rate": settings.get("max_tx_rate", 0),
        }
        _set(host, pf_index, vf, "min/max_tx_rate", ("IFLA_VF_RATE", rate))
    if "link_state" in settings:
        value = {"link_state": LINK_STATES[settings["link_state"]]}
        _set(host, pf_index, vf, "link_state", ("IFLA_VF_LINK_STATE", value))
