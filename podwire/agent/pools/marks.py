"""The ownership mark of a pooled port, in the backend itself.

Tags (Neutron's tags; the OVN backend keeps them in the logical switch
port's external_ids, the embedded one in its port table):
``podwire:host=<host>``, ``podwire:purpose=pool``, ``podwire:pool=<pool id>``,
``podwire:generation=<n>`` and ``podwire:entry=<entry id>`` (the store's
row, so a port created by a refill that died before recording it is found
again). ``device_owner`` is ``podwire:pool`` and the name says the pool.
Never ``podwire:purpose=attachment``: the attachment orphan sweep
(agent/reconcile.py) leaves pooled ports to the pools' own sweep.
"""

from __future__ import annotations

from podwire.agent.ownership import DEVICE_OWNER_PREFIX, owned_tags

PURPOSE_POOL = "pool"
DEVICE_OWNER = f"{DEVICE_OWNER_PREFIX}pool"


def host_pool_tags(host_id: str) -> list[str]:
    """Every pooled port of this host carries these."""
    return owned_tags(host_id, PURPOSE_POOL)


def port_tags(host_id: str, pool_id: str, generation: int, entry_id: str) -> list[str]:
    return [
        *host_pool_tags(host_id),
        f"podwire:pool={pool_id}",
        f"podwire:generation={generation}",
        f"podwire:entry={entry_id}",
    ]


def port_name(pool_id: str) -> str:
    return f"podwire-pool-{pool_id}"
