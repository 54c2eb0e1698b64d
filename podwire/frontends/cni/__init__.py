"""The CNI frontend: the agent-side implementation of the CNI spec (1.1.0, and
configs of 0.3.x, 0.4.0 and 1.0.0 answered in their own version). The
``podwire-cni`` shim only carries the runtime's environment and stdin here
(see shim.py); everything the spec says is decided in this package."""
