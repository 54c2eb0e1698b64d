"""The REST API of the embedded network service: a subset of Neutron v2.0.

``create_app(backend, auth)`` builds the FastAPI app; ``podwire server`` serves
it with TokenFileAuth, the agent mounts it on its unix socket with
TrustAllAuth.
"""

from podwire.api.app import create_app, install_error_handlers
from podwire.api.auth import Auth, TokenFileAuth, TrustAllAuth

__all__ = ["Auth", "TokenFileAuth", "TrustAllAuth", "create_app", "install_error_handlers"]
