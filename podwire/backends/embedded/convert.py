"""Rows to model objects. Rows come from our own tables, written from
validated models, so the objects are built without validating them again
(``model_construct``): listing 10,000 ports must stay well under 0.5 s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row

from podwire.model import (
    AllocationPool,
    AllowedAddressPair,
    FixedIp,
    HostRoute,
    Network,
    Port,
    PortBinding,
    Subnet,
    SubPort,
    Trunk,
)


def network(row: Row[Any], subnet_ids: list[str]) -> Network:
    return Network.model_construct(
        id=row.id,
        name=row.name,
        project_id=row.project_id,
        description=row.description,
        mtu=row.mtu,
        network_type=row.network_type,
        segmentation_id=row.segmentation_id,
        physical_network=row.physical_network,
        port_security_enabled=row.port_security_enabled,
        shared=row.shared,
        admin_state_up=row.admin_state_up,
        status=row.status,
        datapath=row.datapath,
        subnets=subnet_ids,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def subnet(row: Row[Any]) -> Subnet:
    return Subnet.model_construct(
        id=row.id,
        name=row.name,
        project_id=row.project_id,
        network_id=row.network_id,
        description=row.description,
        ip_version=row.ip_version,
        cidr=row.cidr,
        gateway_ip=row.gateway_ip,
        allocation_pools=[AllocationPool.model_construct(**p) for p in row.allocation_pools],
        dns_nameservers=list(row.dns_nameservers),
        host_routes=[HostRoute.model_construct(**r) for r in row.host_routes],
        enable_dhcp=row.enable_dhcp,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def fixed_ip(subnet_id: str, ip_address: str) -> FixedIp:
    return FixedIp.model_construct(subnet_id=subnet_id, ip_address=ip_address)


def port(row: Row[Any], fixed_ips: list[FixedIp]) -> Port:
    """``row`` carries the port's columns plus parent_port_id and sub_vlan
    (NULL unless the port is a trunk's sub-port)."""
    return Port.model_construct(
        id=row.id,
        name=row.name,
        project_id=row.project_id,
        network_id=row.network_id,
        description=row.description,
        mac_address=row.mac_address,
        fixed_ips=fixed_ips,
        device_id=row.device_id,
        device_owner=row.device_owner,
        status=row.status,
        admin_state_up=row.admin_state_up,
        port_security_enabled=row.port_security_enabled,
        security_groups=list(row.security_groups),
        allowed_address_pairs=[
            AllowedAddressPair.model_construct(**p) for p in row.allowed_address_pairs
        ],
        vnic_type=row.vnic_type,
        binding=PortBinding.model_construct(
            host_id=row.binding_host_id,
            profile=row.binding_profile,
            vif_type=row.binding_vif_type,
            vif_details=row.binding_vif_details,
        ),
        parent_port_id=row.parent_port_id,
        segmentation_id=row.sub_vlan,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def subport(row: Row[Any]) -> SubPort:
    return SubPort.model_construct(
        port_id=row.port_id,
        segmentation_type=row.segmentation_type,
        segmentation_id=row.segmentation_id,
    )


def trunk(row: Row[Any], sub_ports: Sequence[SubPort]) -> Trunk:
    return Trunk.model_construct(
        id=row.id,
        name=row.name,
        project_id=row.project_id,
        description=row.description,
        port_id=row.port_id,
        status=row.status,
        admin_state_up=row.admin_state_up,
        sub_ports=list(sub_ports),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
