"""Processing stages of the engine, one module per stage."""
