# podwire: set-up, demo, tests. Run as root on Debian 12.
# `make demo` and `make test` work from a fresh clone: they install what they need.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Debian packages the demo and the tests use (see shared RECIPES).
DEB_PACKAGES := podman runc containernetworking-plugins docker.io \
	openvswitch-switch ovn-central ovn-host iperf3 busybox-static \
	postgresql nftables ethtool iproute2 uidmap gcc libc6-dev \
	openvswitch-switch-dpdk dpdk dpdk-dev user-mode-linux cpio xz-utils curl
# From bookworm-backports: QEMU 10 (the emulated igb SR-IOV NIC).
BACKPORT_PACKAGES := qemu-system-x86

.PHONY: all deps system-deps guest-kernel neutron venv shim test test-fast lint demo demo-ovn demo-nested bench clean

all: venv

deps: system-deps guest-kernel neutron venv shim

system-deps:
	@BACKPORTS="$(BACKPORT_PACKAGES)" scripts/install-system-deps.sh $(DEB_PACKAGES)

# A Debian kernel unpacked for the QEMU test guests (SR-IOV, nested).
guest-kernel: system-deps
	@scripts/install-guest-kernel.sh

# A real Neutron API in its own virtualenv, for the Neutron backend's tests.
neutron:
	@scripts/install-neutron.sh

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The compiled CNI shim (shim/podwire-cni.c, ~800 lines of C, libc only; the Python
# shim is the fallback).
shim: venv
	@if [ -f shim/podwire-cni.c ]; then $(MAKE) -C shim; fi

test: deps
	scripts/run-tests.sh

test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

lint: venv
	$(VENV)/bin/ruff check podwire tests bench
	$(VENV)/bin/ruff format --check podwire tests bench
	$(VENV)/bin/mypy

demo: deps
	scripts/demo.sh

# The same demo with the agent on OVN (a private OVS + OVN it starts and stops).
demo-ovn: deps
	$(PY) scripts/demo-ovn.py

# Containers inside a VM (user-mode Linux) on ipvlan, pinging a host container;
# the VM port's allowed-address-pairs before and after (docs/nested.md).
demo-nested: deps
	$(PY) scripts/demo-nested.py

bench: deps
	$(PY) bench/api_ports.py
	@if [ -f bench/cni_latency.py ]; then $(PY) bench/cni_latency.py; fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	@if [ -f shim/Makefile ]; then $(MAKE) -C shim clean; fi
