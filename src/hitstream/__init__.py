"""hitstream: real-time, privacy-first website analytics."""

__version__ = "0.1.0"
