"""The Neutron backend: networks and ports in an OpenStack Neutron (or a
podwire server, which speaks the same API), over openstacksdk.

See docs/neutron.md. The only room that imports openstacksdk.
"""

from podwire.backends.neutron.backend import NeutronBackend

__all__ = ["NeutronBackend"]
