"""The embedded backend: networks and ports in SQLite (default) or PostgreSQL.

Modules: schema (tables and constraints), db (engines, SQLite locking), ipam
(pure address arithmetic), macs, filters (Neutron list filters as SQL),
convert (rows to model objects), backend (the Backend implementation).
"""

from podwire.backends.embedded.backend import EmbeddedBackend

__all__ = ["EmbeddedBackend"]
