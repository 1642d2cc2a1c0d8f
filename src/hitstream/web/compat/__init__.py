"""Drop-in endpoints for other analytics clients: each request is translated to the canonical
event (through the collector) or to Stats API queries (through the stats service)."""
