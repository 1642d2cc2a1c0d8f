"""hitstream's performance harness: ingest throughput and stats latency against a real server."""
