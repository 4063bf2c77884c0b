"""The Kafka runtime: stage contract and topology, consume loop, worker, topics, dead letters, metrics."""
