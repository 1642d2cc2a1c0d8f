"""The gRPC edge: the Stats API as the ``hitstream.v1.Stats`` service, with health checking
and reflection (``hitstream grpc``, ``hitstream serve --grpc-port``; the ``grpc`` extra).

A sibling of ``hitstream.web``: it answers with the same services, the same query building
and the same gatekeeper, so both edges give the same numbers to the same credentials.
"""
