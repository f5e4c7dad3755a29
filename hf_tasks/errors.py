"""User-facing errors: the CLI prints these as one message, never as a stack trace."""


class HfTasksError(Exception):
    """A mistake in the user's input (config, data, paths) with a message that says how to fix it."""


class ConfigError(HfTasksError):
    """An invalid recipe key or value; the message names the key."""


class DataError(HfTasksError):
    """Raw or prepared data that cannot be used as given."""


def guarded(fn, *args) -> int:
    """Run ``fn`` turning user errors into one ``error:`` line (exit status 2); real bugs keep their traceback."""
    import sys

    try:
        return fn(*args)
    except HfTasksError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
