"""Orchestration of the domain and the ports: collector, processor, stats, live updates."""
