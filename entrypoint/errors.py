"""One error tree for the whole package.

Every failure that a user can cause or fix is an :class:`AutoinferError` subclass that
carries its error code (``E_CONFIG`` ..., listed in the README) and its sysexits.h exit code. Only the CLI
turns these into a message, a hint and an exit status; everything below it raises.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar


class AutoinferError(Exception):
    """Base class: a failure with a stable error code and exit code."""

    code: ClassVar[str] = "E_INTERNAL"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.data = data or {}


class NotReadyError(AutoinferError):
    """The servers do not all answer their health check yet (Docker HEALTHCHECK: 1 = unhealthy)."""

    code = "E_NOT_READY"
    exit_code = 1


class ArgsError(AutoinferError):
    """Bad use of a variable or argument (not click's own usage errors, which exit 2)."""

    code = "E_ARGS"
    exit_code = 64


class VerifyError(AutoinferError):
    """Data failed verification: a digest mismatch, a truncated or invalid file."""

    code = "E_VERIFY"
    exit_code = 65


class ArchiveError(AutoinferError):
    """An archive is unsafe or corrupt and was refused."""

    code = "E_ARCHIVE"
    exit_code = 65


class NotFoundError(AutoinferError):
    code = "E_NOT_FOUND"
    exit_code = 66


class NetError(AutoinferError):
    """The network, a mirror or an API is unavailable (or offline mode forbids it)."""

    code = "E_NET"
    exit_code = 69


class DiskError(AutoinferError):
    """Cannot create or install: disk full, read-only file system, I/O error."""

    code = "E_DISK"
    exit_code = 73


class QuotaError(AutoinferError):
    code = "E_QUOTA"
    exit_code = 73


class LockError(AutoinferError):
    """Another process held the lock past the wait: try again."""

    code = "E_LOCK"
    exit_code = 75


class PermError(AutoinferError):
    code = "E_PERM"
    exit_code = 77


class LicenseError(AutoinferError):
    code = "E_LICENSE"
    exit_code = 77


class ConfigError(AutoinferError):
    """A variable, a config file or a flag combination is wrong."""

    code = "E_CONFIG"
    exit_code = 78


class CompatError(AutoinferError):
    code = "E_COMPAT"
    exit_code = 78


def from_os_error(exc: OSError, action: str) -> AutoinferError:
    """Classify an ``OSError`` raised while doing *action* (e.g. "write /soft/app/x")."""
    detail = f"cannot {action}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskError(detail, hint="free some space or use a larger volume")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermError(detail, hint="check the owner and mode of the volume")
    if exc.errno == errno.EROFS:
        return DiskError(detail, hint="the volume is mounted read-only")
    if exc.errno == errno.ENOENT:
        return NotFoundError(detail)
    return DiskError(detail)
