"""The agent's default nftables table, for the tests and the benchmarks that
start agents: each agent keeps its table when it stops (its ports stay
secured across a restart), so whoever started them removes it at the end,
but only when it was not there at the start: a table that was there belongs
to an agent running on the host."""

from __future__ import annotations

from podwire.datapath.portsec import DEFAULT_TABLE, PortSecurityTable, nft


def default_table_exists() -> bool:
    try:
        return f"table bridge {DEFAULT_TABLE}" in nft("list tables\n")
    except Exception:  # no nftables here: nothing to remove either
        return False


class DefaultTableGuard:
    """``remove()`` drops the default table when ``__init__`` did not find it."""

    def __init__(self) -> None:
        self.there_before = default_table_exists()

    def remove(self) -> None:
        if not self.there_before and default_table_exists():
            PortSecurityTable().remove_table()
