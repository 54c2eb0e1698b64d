"""Kind plugins: one per data path (podwire.kinds.registry lists them)."""
