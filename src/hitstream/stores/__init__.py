"""The store port and its adapters, picked by URL scheme (see ``hitstream.stores.base``)."""
