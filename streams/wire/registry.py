"""The engine's side of a Confluent-compatible schema registry.

Uses confluent-kafka's own ``SchemaRegistryClient``, so the engine works unchanged
against Confluent Schema Registry, Apicurio (ccompat API), Karapace or the embedded
:mod:`streams.embedded.registry`. Subjects follow Confluent's TopicNameStrategy
(``<topic>-value``), the default of every Confluent serializer, so a hospital's
``AvroSerializer`` and the engine agree on where a topic's schemas live.

With ``RWE_SCHEMA_REGISTRY_URL`` set the engine writes Confluent framing with
registered ids and resolves ids it reads there; unset, it writes Avro single-object
encoding resolved against ``schemas/`` (:func:`encoder_for`, :func:`decoder_for`).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.errors import BrokerUnavailable, ConfigError
from streams.settings import Settings
from streams.wire import schemas
from streams.wire.formats import CONFLUENT, SINGLE_OBJECT, Decoder, Encoder

T = TypeVar("T")

SCHEMA_NOT_FOUND = 40403
INCOMPATIBLE = 409


class RegistryUnavailable(BrokerUnavailable):
    """The schema registry cannot be reached or fails (5xx); the message names its URL."""


class SchemaNotFound(LookupError):
    """The registry has no schema with this id."""


class SchemaIncompatible(ConfigError):
    """The registry refused a schema: it breaks the subject's compatibility level."""


def subject_for(topic: str) -> str:
    """Confluent's TopicNameStrategy subject of a topic's values."""
    return f"{topic}-value"


def schema_text(schema_name: str) -> str:
    """The JSON the engine registers for one of its schemas: full (docs, defaults,
    logical types kept, named types inlined), keys sorted, no whitespace."""
    return json.dumps(schemas.raw_schema(schema_name), sort_keys=True, separators=(",", ":"))


class Registry:
    """A schema registry at ``url`` (comma-separated URLs fail over, as in confluent-kafka).

    ``config`` adds ``SchemaRegistryClient`` settings, e.g. ``basic.auth.user.info``,
    ``ssl.ca.location``, ``max.retries``. Every method raises one-line errors:
    :class:`RegistryUnavailable`, :class:`SchemaNotFound`, :class:`SchemaIncompatible`
    or :class:`~streams.errors.ConfigError`.
    """

    def __init__(self, url: str, config: Mapping[str, Any] | None = None) -> None:
        self.url = _without_credentials(url)  # for messages: user:password@ never shows
        for part in url.split(","):
            parts = urlsplit(part.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"RWE_SCHEMA_REGISTRY_URL {self.url!r} is not an http(s)://host[:port] URL")
        try:
            self._client = SchemaRegistryClient({**(config or {}), "url": url})
        except (TypeError, ValueError, OSError) as exc:
            raise ConfigError(f"schema registry {self.url}: {exc}") from None
        # Pooled HTTP connections close with the Registry, even one never closed explicitly.
        self._finalizer = weakref.finalize(self, self._client.close)
        self._by_id: dict[int, dict[str, Any]] = {}
        self._registered: dict[tuple[str, str], int] = {}
        self._checked = False

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        """Parsed JSON of the writer schema ``schema_id`` (cached; a fresh copy each call)."""
        found = self._by_id.get(schema_id)
        if found is None:
            schema = self._call(lambda: self._client.get_schema(schema_id),
                                f"schema id {schema_id}", lookup=True)
            if schema.schema_type not in (None, "AVRO"):
                raise SchemaNotFound(f"schema id {schema_id} is {schema.schema_type}, not Avro")
            try:
                parsed = json.loads(schema.schema_str or "")
            except ValueError:
                raise SchemaNotFound(f"schema id {schema_id} from {self.url} is not JSON") from None
            if isinstance(parsed, str):  # a primitive schema such as "string"
                parsed = {"type": parsed}
            if not isinstance(parsed, dict):
                raise SchemaNotFound(f"schema id {schema_id} is not a record schema")
            found = self._by_id[schema_id] = parsed
        return copy.deepcopy(found)

    def register(self, subject: str, schema_name: str) -> int:
        """Register the engine's schema ``schema_name`` under ``subject``; its id (cached)."""
        key = (subject, schema_name)
        if key not in self._registered:
            schema = Schema(schema_text(schema_name), "AVRO")
            self._registered[key] = self._call(
                lambda: self._client.register_schema(subject, schema), f"registering {schema_name} "
                f"under {subject}")
        return self._registered[key]

    def check(self) -> None:
        """Fail fast, with a one-line error, when the registry cannot be reached."""
        if not self._checked:
            self._call(self._client.get_subjects, "listing subjects")
            self._checked = True

    def close(self) -> None:
        """Close pooled connections (also done when the Registry is garbage-collected)."""
        self._finalizer()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, fn: Callable[[], T], what: str, lookup: bool = False) -> T:
        try:
            return fn()
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            detail = " ".join(str(exc.error_message).split())
            message = (f"schema registry {self.url}, {what}: {detail} "
                       f"(HTTP {status}, error {exc.error_code})")
            if lookup and (exc.error_code == SCHEMA_NOT_FOUND or status == 404):
                raise SchemaNotFound(message) from None
            if exc.error_code == INCOMPATIBLE or status == 409:
                raise SchemaIncompatible(message) from None
            if isinstance(status, int) and 400 <= status < 500:  # auth, wrong URL, bad request
                raise ConfigError(message) from None
            raise RegistryUnavailable(message) from None
        except (ConfigError, BrokerUnavailable, LookupError):
            raise
        except Exception as exc:  # httpx transport errors, TLS, DNS, timeouts, bad JSON
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise RegistryUnavailable(
                f"schema registry {self.url} is unreachable ({what}): {detail}") from None


def _without_credentials(url: str) -> str:
    return ",".join(re.sub(r"//[^/@]*@", "//", part) for part in url.split(","))


_registries: dict[str, Registry] = {}
_registries_lock = threading.Lock()


def registry_for(url: str) -> Registry:
    """One shared :class:`Registry` per URL for the process."""
    with _registries_lock:
        if url not in _registries:
            _registries[url] = Registry(url)
        return _registries[url]


def encoder_for(settings: Settings, schema_name: str, topic: str) -> Encoder:
    """Encoder for ``topic``: Confluent framing with the registered id when a registry
    is configured (registering the schema under ``<topic>-value``), else single-object."""
    url = settings.schema_registry_url
    if not url:
        return Encoder(schema_name, SINGLE_OBJECT)
    schema_id = registry_for(url).register(subject_for(topic), schema_name)
    return Encoder(schema_name, CONFLUENT, schema_id)


def decoder_for(settings: Settings, reader_name: str) -> Decoder:
    """Decoder of every framing into ``reader_name``; resolves Confluent ids in the
    configured registry (checked reachable now, so a wrong URL fails at start-up)."""
    url = settings.schema_registry_url
    if not url:
        return Decoder(reader_name)
    registry = registry_for(url)
    registry.check()
    return Decoder(reader_name, registry_lookup=registry.schema_by_id)
