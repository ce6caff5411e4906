"""The one exception type that means "the user's input is wrong".

Every package raises `UserError` for bad input (a field, a file, a value); the CLI prints its
message on one line and exits non-zero, without a traceback. Anything else is a bug and keeps
its traceback.
"""


class UserError(ValueError):
    """Bad input: the message names the field or file and what is wrong with it."""
