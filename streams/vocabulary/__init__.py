"""Names every part of the engine shares: time units, dead-letter reasons, indicator scopes."""
