"""Modules generated from ``proto/hitstream/v1/stats.proto`` (``scripts/protos.py``): do not
edit; ``tests/unit/test_rpc_setup.py`` fails when they are not what the .proto gives."""
