"""podwire: containers on SDN networks, with the data path each workload needs."""

__version__ = "0.1.0"
