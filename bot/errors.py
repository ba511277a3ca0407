"""Errors a person can act on. Every layer raises these; the CLI and the Slack error handler render them."""

from __future__ import annotations


class TflockError(Exception):
    """Base: `str(error)` is the whole message for the person; `exit_code` is for the CLI (docs/design.md §6)."""

    exit_code = 1


class BadInput(TflockError):
    """The person gave something we cannot use (docs/design.md §12). CLI exit 2."""

    exit_code = 2


class ConfigurationError(TflockError):
    """The deployment is missing something this command needs (a table, a bucket, a backend)."""

    exit_code = 2


class AwsAccessDenied(TflockError):
    """AWS refused a call; names the permission and resource so an operator can grant it."""

    def __init__(self, permission: str, resource: str, detail: str = "") -> None:
        self.permission = permission
        self.resource = resource
        self.detail = detail
        super().__init__(
            f"AWS denied {permission} on {resource}: grant it to the bot's role" + (f" ({detail})" if detail else "")
        )


class AwsFailure(TflockError):
    """AWS could not be reached or answered with an error after retries."""


class LockNotFound(TflockError):
    """A lock ID that no configured table or bucket holds."""
