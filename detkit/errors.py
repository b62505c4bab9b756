"""The exceptions detkit raises.

Every exception is a :class:`DetkitError`; most also inherit the builtin that
plain ``except`` clauses already catch, so ``except ValueError`` keeps working::

    DetkitError
    ├── InputError                  (ValueError)  a bad argument or tensor given to detkit
    │   └── ConfigError             (ValueError)  an invalid configuration; names the key path
    ├── NotFoundError               (KeyError)    an unknown name or key; lists the known ones
    │   └── ComponentNotFoundError                an unknown component name
    ├── PluginError                               a plugin that cannot be used
    │   ├── DuplicateComponentError               two plugins register one kind and name
    │   └── IncompatiblePluginError               a plugin outside detkit's plugin API range
    ├── DataError                   (ValueError)  a malformed dataset; names the file and item
    ├── DownloadError               (OSError)     a download that failed or could not be verified
    ├── CheckpointError             (OSError)     a saved model or checkpoint that cannot be read
    ├── StorageError                (OSError)     a file that cannot be written (full disk, read-only, ...)
    ├── ExportError                 (RuntimeError) a detector that cannot be exported; names the component
    ├── TrainingError               (RuntimeError) training that cannot go on
    │   └── NonFiniteLossError                    a NaN or infinite loss; names epoch and batch
    └── MissingDependencyError      (ImportError) an optional dependency is not installed

    DetkitWarning                   (UserWarning)
    └── PluginWarning                             a plugin was skipped; names it and the reason

Messages say what was expected, what was given, and, where one exists, what to do.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ComponentNotFoundError",
    "ConfigError",
    "DataError",
    "DetkitError",
    "DetkitWarning",
    "DownloadError",
    "DuplicateComponentError",
    "ExportError",
    "IncompatiblePluginError",
    "InputError",
    "MissingDependencyError",
    "NonFiniteLossError",
    "NotFoundError",
    "PerformanceWarning",
    "PluginError",
    "PluginWarning",
    "StorageError",
    "TrainingError",
]


class DetkitError(Exception):
    """Base class of every exception that detkit raises on purpose."""


class InputError(DetkitError, ValueError):
    """A bad argument or tensor: the message names it, the constraint, and the value given."""


class ConfigError(InputError):
    """An invalid configuration. ``key`` is the dotted key path (``"train.epochs"``) or ``None``."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class NotFoundError(DetkitError, KeyError):
    """An unknown name or key; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class ComponentNotFoundError(NotFoundError):
    """An unknown component name; the message lists the registered names of that kind."""


class PluginError(DetkitError):
    """A plugin that cannot be loaded or used."""


class DuplicateComponentError(PluginError):
    """Two plugins register a component of the same kind under the same name."""


class IncompatiblePluginError(PluginError):
    """A plugin declares a range of plugin API versions that excludes detkit's."""


class DataError(DetkitError, ValueError):
    """A malformed dataset, annotation or record; the message names the file and the item index."""


class DownloadError(DetkitError, OSError):
    """A download that failed, was interrupted, or did not match its SHA-1 sum."""


class CheckpointError(DetkitError, OSError):
    """A saved detector or training checkpoint that is missing, incomplete or unreadable."""


class StorageError(DetkitError, OSError):
    """A file or folder cannot be written: a full disk, a read-only folder, missing permissions.

    The message names the path and what to do; nothing half-written is left under the final name.
    """


class TrainingError(DetkitError, RuntimeError):
    """Training cannot go on."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; ``epoch`` and ``batch`` say where (0-based)."""

    def __init__(self, message: str, epoch: int, batch: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class ExportError(DetkitError, RuntimeError):
    """A detector that cannot be exported to the format asked for; the message names the component and its distribution."""


class MissingDependencyError(DetkitError, ImportError):
    """A dependency that this feature needs is not installed; the message gives the pip command."""


class DetkitWarning(UserWarning):
    """Base class of the warnings detkit issues."""


class PerformanceWarning(DetkitWarning):
    """Something makes detkit run slower than it could; the message says what to change."""


class PluginWarning(DetkitWarning):
    """A plugin was skipped (failed to load, broke its contract, or is incompatible)."""
