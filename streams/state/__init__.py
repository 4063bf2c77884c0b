"""What stages keep between batches: per-partition stores, their batched changelogs, dedupe, the event-time merge."""
