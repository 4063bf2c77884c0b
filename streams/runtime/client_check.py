"""The Kafka client settings checked by librdkafka itself before anything connects.

An unknown ``RWE_KAFKA_*`` key, an invalid value or an out-of-range number would
otherwise surface as a librdkafka exception deep inside a stage, with a traceback. Here
each is one line naming the environment variable, and Java-client habits get a hint.
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaException, Producer

from streams.errors import ConfigError
from streams.runtime.runner import consumer_config, producer_config
from streams.settings import Settings

# Java client settings that librdkafka does not have, and what to use instead.
JAVA_HINTS = {
    "sasl.jaas.config": "librdkafka takes sasl.username and sasl.password (RWE_KAFKA_SASL_USERNAME, "
                        "RWE_KAFKA_SASL_PASSWORD) instead of a JAAS line",
    "ssl.truststore.location": "librdkafka takes a PEM file: ssl.ca.location (RWE_KAFKA_SSL_CA_LOCATION)",
    "ssl.keystore.location": "librdkafka takes PEM files: ssl.certificate.location and ssl.key.location",
    "key.serializer": "the engine serialises its own records",
    "value.serializer": "the engine serialises its own records",
}
_quiet = logging.getLogger("rwe.client-check")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def env_name(key: str) -> str:
    """``security.protocol`` -> ``RWE_KAFKA_SECURITY_PROTOCOL``."""
    return "RWE_KAFKA_" + key.upper().replace(".", "_")


def check_client_config(settings: Settings) -> None:
    """Raise ConfigError (one line) if librdkafka refuses the producer or consumer configuration."""
    for key in settings.kafka:
        if key in JAVA_HINTS:
            raise ConfigError(f"{env_name(key)}: {key} is a Java client setting; {JAVA_HINTS[key]}")
    # No bootstrap servers: librdkafka parses and checks everything, and connects to nothing.
    configs = [(Producer, producer_config(settings)), (Consumer, consumer_config(settings, settings.group_id))]
    for client, full in configs:
        config = {k: v for k, v in full.items() if k != "bootstrap.servers"} | {"logger": _quiet}
        try:
            made = client(config)
        except KafkaException as exc:
            raise ConfigError(_explain(settings, exc.args[0].str())) from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(_explain(settings, str(exc))) from None
        if isinstance(made, Consumer):
            made.close()


def _explain(settings: Settings, message: str) -> str:
    """librdkafka's message with the setting it is about named the way the user set it."""
    message = " ".join(message.split())  # librdkafka's messages may end in a newline
    for key in sorted(settings.kafka, key=len, reverse=True):
        if f'"{key}"' in message or f" {key}" in message or message.endswith(key):
            return f"{env_name(key)}={settings.kafka[key]!r}: {message}"
    return f"Kafka client configuration: {message}"
