"""The HTTP face of hitstream: collect, stats, live and ops routes, and the dashboard."""
