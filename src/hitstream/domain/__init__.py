"""The pure core of hitstream: standard library only, no I/O, no clock (callers pass ``now``)."""
