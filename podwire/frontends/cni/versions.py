"""CNI spec versions: which we speak and which one a config asks for."""

from __future__ import annotations

from typing import Any

from podwire.frontends.cni.errors import CniError, Code

SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"


def as_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


def at_least(version: str, minimum: str) -> bool:
    return as_tuple(version) >= as_tuple(minimum)


def choose(config: dict[str, Any]) -> str:
    """The version to answer in.

    ``cniVersion`` wins when we support it: it is what the runtime negotiated
    and injected into the plugin's config. ``cniVersions`` (a conflist's list)
    is honoured when cniVersion is absent or one we do not speak: the highest
    version in both that list and ours."""
    version = config.get("cniVersion")
    if version is not None and not isinstance(version, str):
        raise CniError(Code.DECODE, "cniVersion must be a string", f"got {version!r}")
    if version in SUPPORTED:
        return version
    offered = config.get("cniVersions")
    if isinstance(offered, list):
        common = [v for v in offered if isinstance(v, str) and v in SUPPORTED]
        if common:
            return max(common, key=as_tuple)
    if version is None and offered is None:
        raise CniError(
            Code.INCOMPATIBLE_VERSION,
            "network config has no cniVersion",
            f"this plugin supports {', '.join(SUPPORTED)}",
        )
    raise CniError(
        Code.INCOMPATIBLE_VERSION,
        f"incompatible CNI version {version or offered!r}",
        f"this plugin supports {', '.join(SUPPORTED)}",
    )


def version_result() -> dict[str, Any]:
    return {"cniVersion": LATEST, "supportedVersions": list(SUPPORTED)}
