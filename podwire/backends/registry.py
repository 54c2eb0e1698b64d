"""Backends by name: ``open_backend(config)`` builds the one the configuration chooses.

Each factory imports its module only when chosen, so a backend whose module
or dependency is missing fails only for whoever picks it.
"""

from __future__ import annotations

from collections.abc import Callable

from podwire import faults
from podwire.backends.base import Backend
from podwire.config import Config
from podwire.errors import InvalidInput, Unavailable

BackendFactory = Callable[[Config], Backend]


def _embedded(config: Config) -> Backend:
    from podwire.backends.embedded import EmbeddedBackend

    return EmbeddedBackend.from_config(config)


def _ovn(config: Config) -> Backend:
    # podwire.backends.ovn is another engineer's module; it takes the whole
    # configuration (OVN NB remotes, timeouts, MAC prefix for its own ports).
    from podwire.backends.ovn import OvnBackend  # type: ignore[import-not-found,unused-ignore]

    return OvnBackend.from_config(config)  # type: ignore[no-any-return,unused-ignore]


def _neutron(config: Config) -> Backend:
    from podwire.backends.neutron import NeutronBackend

    return NeutronBackend.from_config(config)


def _remote(config: Config) -> Backend:
    # A podwire server speaks Neutron's API: the same client, at its URL.
    from podwire.backends.neutron import NeutronBackend

    return NeutronBackend.for_remote(config)


FACTORIES: dict[str, BackendFactory] = {
    "embedded": _embedded,
    "ovn": _ovn,
    "neutron": _neutron,
    "remote": _remote,
}


def open_backend(config: Config) -> Backend:
    try:
        factory = FACTORIES[config.backend]
    except KeyError:
        raise InvalidInput(
            f"unknown backend {config.backend!r}; known: {', '.join(sorted(FACTORIES))}",
            kind="config",
            field="backend",
        ) from None
    # Tests only: PODWIRE_FAULTS names where to fail or crash. Read before the
    # backend opens, so a malformed plan fails with nothing to close.
    wrap_with_faults = faults.active()
    try:
        backend = factory(config)
    except ImportError as exc:
        raise Unavailable(
            f"backend {config.backend!r} cannot be loaded: {exc}",
            kind="config",
            field="backend",
        ) from exc
    if wrap_with_faults:
        from podwire.backends.faulty import FaultyBackend

        try:
            return FaultyBackend(backend)
        except BaseException:
            backend.close()
            raise
    return backend
