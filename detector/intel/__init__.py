"""Indicator sharing between providers: keyed hashes of linkage values (``hashing``, used by the state
layer to match a partner's indicators) and STIX 2.1 bundles (``stix``, used by the CLI)."""
