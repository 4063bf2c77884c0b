"""Core of the streaming real-world-evidence engine: the domain (catalogue, clinical, outcomes,
indicators, monitoring), wire formats, state, the Kafka runtime, the CLI and the embedded default."""

import os

# The engine's linear algebra is small (control-limit Markov chains of ~300 states). OpenBLAS
# threads spin while they wait for work, taking CPU from the stages: a 300 x 300 solve took
# 88 ms with the default threads beside a running pipeline and 3.7 ms with one. Set before
# numpy is first imported; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
