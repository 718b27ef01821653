"""The one error type every user-facing failure is turned into (pure Python, shared by engine and scene)."""


class InputError(ValueError):
    """A user-supplied file or value cannot be used; the message says which and why."""
