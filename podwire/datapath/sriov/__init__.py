"""SR-IOV virtual functions: the inventory read from sysfs (inventory.py),
VF settings through the PF over netlink (vfnl.py), the one authority for
leases and baselines (leases.py), vfio-pci binding (pcidrv.py) and the
driver that plugs a VF into a container (driver.py)."""
