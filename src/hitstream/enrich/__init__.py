"""Adapters that enrich events with third-party parsers: user agents and bot detection.

Nothing is imported here on purpose: each adapter loads its data when it is constructed
(by ``hitstream.bootstrap``), not when this package is imported.
"""
