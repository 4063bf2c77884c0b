"""Clinical normalisation of one inbound event: codes, units, clocks, pseudonyms, validation. Pure logic."""
