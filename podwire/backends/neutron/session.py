"""Who the Neutron backend is: an openstacksdk Connection built the ways
openstacksdk users expect.

- ``cloud``: a clouds.yaml entry (OS_CLIENT_CONFIG_FILE, ~/.config/openstack,
  /etc/openstack), Keystone and region included;
- ``auth_url`` + ``username``/``password`` (or an application credential)
  + project: Keystone credentials;
- ``endpoint`` + ``token``: a fixed Neutron URL and a token, no Keystone
  (podwire server's tokens; ``backend = "remote"``);
- ``endpoint`` alone: Neutron's noauth (a test or lab Neutron; the caller is
  whatever the deployment's noauth makes it);
- ``unix:///PATH``: a podwire agent's API on its unix socket (the CLI), the
  socket's permissions deciding who may ask.

The identity is the session's: every call runs as that user and project.
"""

from __future__ import annotations

import socket
from typing import Any

import openstack
import openstack.connection
from keystoneauth1 import noauth, session, token_endpoint
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from podwire import errors
from podwire.config import NeutronConfig

UNIX_PREFIX = "unix://"
# The host name a unix-socket URL carries; the socket path decides where.
_UDS_BASE = "http://podwire"


def root_of(url: str) -> str:
    """The service root (version discovery lives there), from a URL that may
    end in /v2.0."""
    url = url.rstrip("/")
    return url[: -len("/v2.0")] if url.endswith("/v2.0") else url


def connect(cfg: NeutronConfig) -> openstack.connection.Connection:
    """The Connection the configuration describes; InvalidInput naming the
    missing setting when it describes none."""
    extra: dict[str, Any] = {}
    if cfg.region_name:
        extra["region_name"] = cfg.region_name
    try:
        if cfg.cloud:
            return openstack.connect(cloud=cfg.cloud, **extra)
        if cfg.auth_url:
            auth = {
                "auth_url": cfg.auth_url,
                "username": cfg.username,
                "password": cfg.password,
                "project_name": cfg.project_name,
                "project_id": cfg.project_id,
                "user_domain_name": cfg.user_domain_name,
                "project_domain_name": cfg.project_domain_name,
                "application_credential_id": cfg.application_credential_id,
                "application_credential_secret": cfg.application_credential_secret,
            }
            auth = {k: v for k, v in auth.items() if v}
            auth_type = "v3applicationcredential" if cfg.application_credential_id else "password"
            return openstack.connect(auth_type=auth_type, auth=auth, verify=cfg.verify, **extra)
    except openstack.exceptions.ConfigException as exc:
        raise errors.InvalidInput(f"neutron: {exc}", kind="config", field="neutron") from None
    if cfg.endpoint:
        return _endpoint_connection(cfg.endpoint, cfg.token, cfg.timeout, cfg.verify)
    raise errors.InvalidInput(
        "backend 'neutron' needs neutron.cloud (a clouds.yaml entry), neutron.auth_url with "
        "credentials, or neutron.endpoint (with neutron.token unless Neutron runs noauth)",
        kind="config",
        field="neutron",
    )


def _endpoint_connection(
    endpoint: str, token: str | None, timeout: float, verify: bool | str = True
) -> openstack.connection.Connection:
    uds = None
    if endpoint.startswith(UNIX_PREFIX):
        uds = endpoint[len(UNIX_PREFIX) :]
        endpoint = _UDS_BASE
    if not endpoint.startswith(("http://", "https://")):
        raise errors.InvalidInput(
            f"invalid Neutron endpoint {endpoint!r}: http(s)://HOST:PORT or unix:///PATH",
            kind="config",
            field="neutron.endpoint",
        )
    root = root_of(endpoint)
    auth: Any = (
        token_endpoint.Token(root + "/v2.0", token) if token else noauth.NoAuth(endpoint=root)
    )
    sess = session.Session(auth=auth, timeout=timeout, verify=verify)
    if uds is not None:
        sess.session.mount(_UDS_BASE + "/", _UnixAdapter(uds))
    return openstack.connection.Connection(session=sess, network_endpoint_override=root)


# --- HTTP over a unix socket (the agent's API) ------------------------------------------


class _UnixConnection(HTTPConnection):
    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__("localhost", **kwargs)
        self._uds_path = path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if isinstance(self.timeout, (int, float)):
            sock.settimeout(self.timeout)
        sock.connect(self._uds_path)
        return sock


class _UnixPool(HTTPConnectionPool):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._uds_path = path

    def _new_conn(self) -> HTTPConnection:
        return _UnixConnection(self._uds_path, timeout=self.timeout.connect_timeout)


class _UnixAdapter(HTTPAdapter):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._pool = _UnixPool(path)

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return self._pool

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        return self._pool

    def close(self) -> None:
        self._pool.close()
        super().close()
