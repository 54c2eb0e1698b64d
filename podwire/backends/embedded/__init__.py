"""The embedded backend: networks and ports in SQLite (default) or PostgreSQL.

Modules: schema (tables and constraints), db (engines, SQLite locking),
statements (prepared statements), store (transactions, scoped lookups),
networks, subnets, ipam (the allocations table; the rules are podwire.ipam),
ports, trunks, macs, filters (Neutron list filters as SQL), convert (rows to
model objects), backend (EmbeddedBackend, composing them).
"""

from podwire.backends.embedded.backend import EmbeddedBackend

__all__ = ["EmbeddedBackend"]
