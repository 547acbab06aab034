"""Model readers and writers. Each produces or consumes a :class:`nncert.Network`; nothing else parses files."""
