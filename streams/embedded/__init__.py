"""The embedded default for one machine: Tansu broker, bundled schema registry, demo."""
