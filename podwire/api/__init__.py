"""The REST API of the embedded network service: a subset of Neutron v2.0.

``podwire.api.app.create_app(backend, auth)`` builds the FastAPI app;
``podwire server`` serves it with ``podwire.api.auth.TokenFileAuth``, the
agent mounts it on its unix socket with ``TrustAllAuth``.

The names are re-exported lazily: importing the package costs nothing
until the app is used. The wire format lives in podwire.neutron, shared
with the remote backend.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Auth", "TokenFileAuth", "TrustAllAuth", "create_app", "install_error_handlers"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "install_error_handlers"):
        from podwire.api import app

        return getattr(app, name)
    if name in ("Auth", "TokenFileAuth", "TrustAllAuth"):
        from podwire.api import auth

        return getattr(auth, name)
    raise AttributeError(name)
