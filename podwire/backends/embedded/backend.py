"""The embedded backend: networks, subnets, ports and trunks in one SQL
database (SQLite by default, PostgreSQL with the same code), with its own IPAM.

Every public call is one transaction: it either commits everything or
nothing, so a refused request leaves no half-made row and no allocated
address behind. Writers on SQLite take the database's write lock up front
(BEGIN IMMEDIATE); on PostgreSQL they lock the rows they depend on (the
network, the subnets they allocate from) in a fixed order. The unique
constraints in schema.py are the final guard against duplicates.
"""

from __future__ import annotations

from podwire.config import Config

from .networks import NetworkCalls
from .ports import PortCalls
from .subnets import SubnetCalls
from .trunks import TrunkCalls


class EmbeddedBackend(NetworkCalls, SubnetCalls, PortCalls, TrunkCalls):
    """The Backend protocol over one SQL database: the engine and
    transactions come from store.Store, each kind of object from its module."""

    name = "embedded"

    @classmethod
    def from_config(cls, config: Config) -> EmbeddedBackend:
        return cls(config.embedded_db_url(), mac_prefix=config.embedded.mac_prefix)
