"""Ingest endpoints: messages from hospital integration engines to the raw topic.

The core (:mod:`streams.ingest.gateway`) takes mapped ClinicalEvents, pseudonymises them,
produces them to events.raw and reports when every one is durable, and writes what cannot be
accepted to the dead-letter topic, sealed; an endpoint (HL7 v2 over MLLP here, FHIR later)
adds its parsing, mapping and acknowledgement.
"""
