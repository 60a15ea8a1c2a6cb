"""The project's one error tree.

Backend errors (asyncpg, redis, kubernetes, botocore, httpx) are wrapped at the client
boundary with ``raise ... from``, so the engine and the runbooks never catch a library's
exception type.

    RemediatorError
    ├── ConfigError            bad config file or value (names the key and the file)
    ├── RuleError              bad rule file (names file:line)
    ├── StateUnavailable       the state store (journal) cannot be reached
    ├── LeaseLost              another replica took over the run; stop, do not act
    ├── InputRejected          a label value failed validation; nothing was changed
    ├── NotCorroborated        the target does not show the symptom the alert claims
    ├── StepFailed             a runbook step cannot succeed; retrying will not help
    │   └── NotConfigured      the step needs a target the config leaves out (skipped)
    └── TargetError            a call to a system the runbooks act on failed
        ├── TargetUnavailable  connection refused / service down        (temporary)
        ├── TargetTimeout      the call did not answer in time           (temporary)
        ├── TargetThrottled    429 / throttling, may carry retry_after   (temporary)
        ├── TargetConflict     409 / optimistic lock lost                (temporary)
        └── TargetRejected     the target refused the request (4xx)      (permanent)
            ├── TargetNotFound the object named does not exist (HTTP 404, AWS *NotFound)
            └── QueryRejected  the database refused a statement; carries its SQLSTATE

``TargetError.temporary`` drives the retry policy of a step: temporary errors are
retried with backoff within the step's budget, permanent ones fail the step at once.
A ``retry_after`` the target sent (HTTP Retry-After, AWS throttling) is honoured: the
next attempt waits at least that long (capped; see engine/runner.py).
"""

from __future__ import annotations


class RemediatorError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(RemediatorError):
    """The configuration is invalid. The message names the key and the file."""


class RuleError(RemediatorError):
    """A rule file is invalid. The message names file:line."""


class StateUnavailable(RemediatorError):
    """The state store cannot be reached; callers must not acknowledge work."""


class LeaseLost(RemediatorError):
    """This process stalled past its lease on a run and another replica resumed it.

    Raised before a step acts, never after: the new owner finishes the run.
    """


class InputRejected(RemediatorError):
    """A value taken from an alert (a label) failed validation. Nothing was changed."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotCorroborated(RemediatorError):
    """The runbook's own read of its target does not show what the alert claims.

    A payload is a claim, not a fact: a step that checks the symptom raises this, and
    the run then mutates nothing and counts as guard ``not_corroborated``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepFailed(RemediatorError):
    """The step cannot succeed; retrying will not help. ``reason`` goes on the page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotConfigured(StepFailed):
    """The step needs a target this config leaves out: skipped, not failed (a choice of
    the operator, not a fault of the target or the runbook)."""


class TargetError(RemediatorError):
    """A call to a target system (database, cache, Kubernetes, AWS, HTTP) failed."""

    temporary: bool = False

    def __init__(self, target: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{target}: {message}")
        self.target = target
        self.retry_after = retry_after


class TargetUnavailable(TargetError):
    temporary = True


class TargetTimeout(TargetError):
    temporary = True


class TargetThrottled(TargetError):
    temporary = True


class TargetConflict(TargetError):
    temporary = True


class TargetRejected(TargetError):
    temporary = False


class TargetNotFound(TargetRejected):
    """The object the call names does not exist: a 404, an AWS ``*NotFound`` code.

    Steps test for absence with this type, never by reading the message.
    """


class QueryRejected(TargetRejected):
    """The server refused a statement (constraint, syntax, permission...).

    ``sqlstate`` lets a step tell e.g. a unique violation (23505) from the rest without
    catching an asyncpg type.
    """

    def __init__(self, target: str, message: str, *, sqlstate: str | None) -> None:
        super().__init__(target, message)
        self.sqlstate = sqlstate
