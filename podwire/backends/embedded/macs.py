"""MAC addresses from the configured prefix, with a random suffix."""

from __future__ import annotations

import secrets


def random_mac(prefix: str) -> str:
    """``prefix`` is 1-5 octets ("0a:70:77"); the rest is random. The prefix
    is validated by podwire.config to be unicast."""
    octets = prefix.lower().split(":") if prefix else []
    suffix = secrets.token_bytes(6 - len(octets))
    return ":".join([*octets, *(f"{b:02x}" for b in suffix)])
