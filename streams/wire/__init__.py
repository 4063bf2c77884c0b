"""Wire formats: the Avro schemas, codecs and their generator, framings, the schema registry client."""
