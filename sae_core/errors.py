"""The exception types that end a command cleanly, with one line and a documented exit code.

`UserError`: the user's input is wrong (a field, a file, a value); the CLI prints its message on
one line and exits 2. `StorageError`: the disk said no (full, read-only, quota, permission); the
CLI prints the path and the cause on one line and exits 74 (EX_IOERR). Anything else is a bug and
keeps its traceback.
"""


class UserError(ValueError):
    """Bad input: the message names the field or file and what is wrong with it."""


class StorageError(OSError):
    """A write or rename failed for a reason of the storage (no space, read-only, no permission).

    The message names the path and the cause; fix the storage and rerun the same command.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "storage error"
