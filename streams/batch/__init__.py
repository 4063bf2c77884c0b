"""Batch evaluation: the stream's rules over an event file, with no broker."""
