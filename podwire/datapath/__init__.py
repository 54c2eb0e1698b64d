"""Data paths: how a port reaches a container. One module per VIF kind."""
