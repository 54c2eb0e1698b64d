"""The netlink wrapper on its own, in real namespaces."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from podwire.datapath.netlink import (
    NetlinkError,
    Netns,
    NetnsError,
    get_tx_checksum,
    rtnl,
    run_in_netns,
    set_tx_checksum,
    write_sysctl,
)
from tests.fixtures.common import unique
from tests.fixtures.netns import ns_run

pytestmark = pytest.mark.root


def test_socket_in_netns_sees_that_netns_and_caller_stays_home(make_netns_pair):
    _, path = make_netns_pair()
    home = os.stat("/proc/thread-self/ns/net").st_ino
    with Netns(path) as ns, rtnl(ns) as inner:
        names = {link.name for link in inner.links()}
        assert names == {"lo"}
    # The caller's thread never changed namespace.
    assert os.stat("/proc/thread-self/ns/net").st_ino == home
    assert run_in_netns(Netns(path), lambda: os.stat("/proc/thread-self/ns/net").st_ino) == (
        os.stat(path).st_ino
    )


def test_missing_and_bogus_netns():
    with pytest.raises(NetnsError) as err:
        Netns("/var/run/netns/pwd-does-not-exist")
    assert err.value.errno == errno.ENOENT
    # Refused at open, proven by nsfs (never opened for I/O: a FIFO would block).
    with pytest.raises(NetnsError) as err2:
        Netns("/proc/self/status")
    assert "not a network namespace" in str(err2.value)
    assert err2.value.errno == errno.EINVAL


def test_kernel_error_carries_extended_ack(make_netns_pair):
    _, path = make_netns_pair()
    with Netns(path) as ns, rtnl(ns) as inner:
        lo = inner.link("lo")
        assert lo is not None
        with pytest.raises(NetlinkError) as err:
            inner.add_route(lo.index, "0.0.0.0/0", "203.0.113.1")  # not on-link: never sent
        assert err.value.errno == errno.ENETUNREACH
        assert err.value.kernel_message  # the kernel's own words
        assert inner.link("pwd-no-such") is None
        assert inner.delete_link("pwd-no-such") is False


def test_veth_peer_created_in_netns_with_mac_and_mtu(make_netns_pair):
    name, path = make_netns_pair()
    host_end = unique("pwdh", 8)
    with Netns(path) as ns, rtnl() as host:
        try:
            host.add_veth(
                host_end, "eth5", mtu=1280, up=True, peer_mac="02:11:22:33:44:55", peer_netns=ns
            )
            assert host.link(host_end).up and host.link(host_end).mtu == 1280
            with rtnl(ns) as inner:
                peer = inner.link("eth5")
                assert peer is not None and peer.mac == "02:11:22:33:44:55" and peer.mtu == 1280
                assert not peer.up
                inner.add_address(peer.index, "2001:db8:5::5/64")
                inner.set_link(peer.index, up=True)
                addrs = {a.cidr: a for a in inner.addresses(peer.index)}
                assert not addrs["2001:db8:5::5/64"].tentative
        finally:
            host.delete_link(host_end)
    assert "eth5" not in ns_run(name, "ip", "link").stdout


def test_tx_checksum_and_sysctl_in_netns(make_netns_pair):
    name, path = make_netns_pair()
    ns_run(name, "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb", check=True)
    with Netns(path) as ns:
        assert get_tx_checksum(ns, "va") is True
        set_tx_checksum(ns, "va", False)
        assert get_tx_checksum(ns, "va") is False
        assert "tx-checksumming: off" in ns_run(name, "ethtool", "-k", "va").stdout
        write_sysctl(ns, "net/ipv6/conf/va/accept_dad", "0")
    assert ns_run(name, "cat", "/proc/sys/net/ipv6/conf/va/accept_dad").stdout.strip() == "0"


def test_concurrent_sockets_in_many_netns(make_netns_pair):
    spaces = [make_netns_pair() for _ in range(8)]
    seen: list[set[str]] = []

    def look(path: str) -> None:
        with Netns(path) as ns, rtnl(ns) as inner:
            seen.append({link.name for link in inner.links()})

    threads = [threading.Thread(target=look, args=(p,)) for _, p in spaces]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [{"lo"}] * 8


def test_batched_requests_run_in_order_and_report_the_first_refusal(make_netns_pair):
    """bring_up and add_routes send several requests at once: each runs after
    the one before (the route through an address added in the same batch
    works), and a refusal names its own request, with every ACK read (the
    socket is usable right after)."""
    _, path = make_netns_pair()
    with Netns(path) as ns, rtnl(ns) as inner:
        inner.add_veth("pwk-a", "pwk-b", mtu=1500)
        a = inner.link("pwk-a")
        lo = inner.link("lo")
        assert a is not None and lo is not None and not a.up and not lo.up
        inner.bring_up(a.index, ["198.18.7.2/24", "2001:db8:7::2/64"])
        assert inner.link("pwk-a").up and inner.link("lo").up
        cidrs = {x.cidr for x in inner.addresses(a.index)}
        assert {"198.18.7.2/24", "2001:db8:7::2/64"} <= cidrs
        inner.add_routes(a.index, [("198.18.8.0/24", "198.18.7.1"), ("198.18.9.9/32", None)])
        dests = {r.destination for r in inner.routes(a.index)}
        assert {"198.18.8.0/24", "198.18.9.9/32"} <= dests

        b = inner.link("pwk-b")
        assert b is not None
        # The second address is refused (already there); the link still
        # comes up: the kernel went on with the rest of the batch.
        with pytest.raises(NetlinkError) as err:
            inner.bring_up(b.index, ["198.18.7.3/24", "198.18.7.3/24"])
        assert err.value.errno == errno.EEXIST
        assert "198.18.7.3/24" in str(err.value)
        assert inner.link("pwk-b").up
        # The first of two refusals is the one raised.
        with pytest.raises(NetlinkError) as err2:
            inner.add_routes(
                a.index, [("198.18.10.0/24", "198.19.0.1"), ("198.18.11.0/24", "198.19.0.2")]
            )
        assert err2.value.errno == errno.ENETUNREACH
        assert "198.18.10.0/24" in str(err2.value)
        assert inner.link("pwk-a") is not None  # all ACKs were read: the socket answers
