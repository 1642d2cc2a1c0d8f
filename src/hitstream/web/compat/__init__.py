"""Drop-in compatibility: other analytics tools' clients, translated to canonical events."""
