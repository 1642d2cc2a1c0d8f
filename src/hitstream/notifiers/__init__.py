"""The notifier port (``base``) and its adapters: ``log://``, ``http(s)://`` webhooks, memory."""
