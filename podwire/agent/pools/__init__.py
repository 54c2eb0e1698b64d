"""Pools of pre-created ports, durable and leak-free (docs/pools.md)."""

from podwire.agent.pools.manager import PortPools

__all__ = ["PortPools"]
