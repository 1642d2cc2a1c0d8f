"""The stats cache port and its adapters (in-process LRU, Redis), picked by URL scheme."""
