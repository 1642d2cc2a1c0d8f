"""The fan-out port (live updates to dashboards) and its adapters, picked by URL scheme."""
