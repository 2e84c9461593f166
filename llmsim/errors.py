"""The errors a user can act on, whatever the command: what `llmsim` reports in one line
and exit status 2 instead of a traceback.

Most are ValueErrors (a bad option, a malformed file, a model that does not fit the GPU,
each with its own subclass where callers tell them apart) or OSErrors (a missing file, an
existing output, a folder one may not write, a server that does not answer).
Unknown names (a policy, a model, a GPU) are KeyErrors, so that a lookup reads naturally;
their message is the first argument, not its repr.
"""

from __future__ import annotations


class UnknownNameError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown name"


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, UnknownNameError, OSError,
                                                 ImportError)
