"""User-facing errors: the CLI prints these as one message, never as a stack trace."""


class HfTasksError(Exception):
    """A mistake in the user's input (config, data, paths) with a message that says how to fix it."""


class ConfigError(HfTasksError):
    """An invalid recipe key or value; the message names the key."""


class DataError(HfTasksError):
    """Raw or prepared data that cannot be used as given."""
