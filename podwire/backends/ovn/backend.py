"""The ``ovn`` backend: networks, subnets, ports and trunks in the OVN
northbound database, through ovsdbapp (see codec.py for the mapping).

IPAM is podwire's own allocator run against the northbound database: the
addresses of every port are the ``addresses`` column of its
Logical_Switch_Port, and each transaction that takes or frees an address
verifies and bumps a generation counter on the network's Logical_Switch, so
two clients (or agents on two hosts) that pick the same address cannot both
commit: OVSDB tells the second to try again, and it re-reads. OVN's own
dynamic addressing was not chosen because it answers asynchronously (northd
fills ``dynamic_addresses`` later; a CNI ADD needs its address now), it
cannot honour allocation pools, and it is IPv4-only with a single subnet per
switch.

Project isolation is enforced here from external_ids, with the same rules as
the embedded backend: a non-admin sees its own objects and shared networks
(and their subnets); another project's object is NotFound.
"""

from __future__ import annotations

from podwire.backends.ovn.connection import SslFiles
from podwire.backends.ovn.networks import NetworkCalls
from podwire.backends.ovn.ports import PortCalls
from podwire.backends.ovn.subnets import SubnetCalls
from podwire.backends.ovn.trunks import TrunkCalls
from podwire.config import Config


class OvnBackend(NetworkCalls, SubnetCalls, PortCalls, TrunkCalls):
    """The Backend protocol over the OVN northbound database: the connection
    and scoped lookups come from store.NbStore, each kind of object from its
    module."""

    name = "ovn"

    @classmethod
    def from_config(cls, config: Config) -> OvnBackend:
        ovn = config.ovn
        ssl = None
        if ovn.ssl_private_key and ovn.ssl_certificate and ovn.ssl_ca_cert:
            ssl = SslFiles(str(ovn.ssl_private_key), str(ovn.ssl_certificate), str(ovn.ssl_ca_cert))
        return cls(
            ovn.nb_remotes,
            timeout=ovn.timeout,
            mac_prefix=config.embedded.mac_prefix,
            ssl=ssl,
        )


__all__ = ["OvnBackend"]
