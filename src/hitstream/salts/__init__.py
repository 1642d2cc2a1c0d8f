"""The salts port: where the collector gets today's and yesterday's visitor salts."""
