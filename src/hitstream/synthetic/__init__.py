"""Synthetic traffic, apart from the rules of analytics: the traffic model, the load client
behind ``hitstream generate`` and the demo site of ``hitstream serve --demo``."""
