"""The ``ovn`` backend: podwire's objects in the OVN northbound database."""

from podwire.backends.ovn.backend import OvnBackend

__all__ = ["OvnBackend"]
