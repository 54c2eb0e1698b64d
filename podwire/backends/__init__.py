"""Backends: where networks and ports live. See base.Backend for the contract."""
