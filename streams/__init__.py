"""Core of the streaming real-world-evidence engine: settings, topics, codecs, state, CLI."""
