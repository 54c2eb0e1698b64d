"""How podwire marks what it creates in the backend, and finds it again.

Ports the agent creates carry Neutron tags: ``podwire:host=<host_id>`` and
``podwire:purpose=<purpose>`` (the mark the orphan sweep looks for, whether
or not the port is bound to a host: nested ports are not), plus the
attachment and interface they were made for, so an ADD that died before
recording the port's id is undone by looking the port up by its tags.
"""

from __future__ import annotations

DEVICE_OWNER_PREFIX = "podwire:"
PURPOSE_ATTACHMENT = "attachment"


def device_owner(frontend: str) -> str:
    return f"{DEVICE_OWNER_PREFIX}{frontend}"


def port_name(container_id: str, ifname: str) -> str:
    """For humans listing ports: which container and interface it is."""
    return f"pw-{container_id[:12]}-{ifname}"


def host_tag(host_id: str) -> str:
    return f"podwire:host={host_id}"


def purpose_tag(purpose: str) -> str:
    return f"podwire:purpose={purpose}"


def attachment_tag(attachment_id: str) -> str:
    return f"podwire:attachment={attachment_id}"


def ifname_tag(ifname: str) -> str:
    return f"podwire:ifname={ifname}"


def owned_tags(host_id: str, purpose: str = PURPOSE_ATTACHMENT) -> list[str]:
    """The ownership mark: every port this host made for ``purpose``."""
    return [host_tag(host_id), purpose_tag(purpose)]


def attachment_port_tags(host_id: str, attachment_id: str, ifname: str) -> list[str]:
    return [*owned_tags(host_id), attachment_tag(attachment_id), ifname_tag(ifname)]


def tag_value(tags: list[str], key: str) -> str | None:
    """The value of ``podwire:<key>=`` among ``tags``."""
    prefix = f"podwire:{key}="
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return None
