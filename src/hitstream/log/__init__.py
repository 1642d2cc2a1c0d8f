"""The event log port and its adapters, picked by URL scheme (see ``hitstream.log.base``)."""
