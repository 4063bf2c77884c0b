"""Errors that reach a user as one line: configuration and environment problems."""


class ConfigError(Exception):
    """A setting, flag or file is wrong; the message names which and why."""


class BrokerUnavailable(Exception):
    """The Kafka cluster cannot be reached or does not answer in time."""
