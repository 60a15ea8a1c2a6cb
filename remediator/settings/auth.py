"""The tokens of ``auth``: webhook and operator tokens, checked at load."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr, field_validator, model_validator

from remediator.settings.base import Strict

# A token short enough to guess or to have been typed as a placeholder ("secret",
# "changeme") is refused at start: these tokens guard mutations of production.
MIN_TOKEN_LENGTH = 16


def _token(value: Any, where: str) -> Any:
    """One configured token, stripped; refused when it cannot be a real secret.

    Surrounding whitespace is stripped rather than refused: it is what a token read
    from a file or a Secret with a trailing newline carries, and the bearer parser
    strips what a client sends the same way.
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        # Said here: pydantic's own message for the union type is unreadable.
        raise ValueError(f"{where} must be a string")
    token = value.strip()
    if not token:
        raise ValueError(f"{where} is only whitespace")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{where} is {len(token)} characters; tokens need at least {MIN_TOKEN_LENGTH}"
        )
    return token


class AuthSettings(Strict):
    webhook_tokens: tuple[SecretStr, ...] = ()
    # Operator tokens may be named ("alice": token) so the audit trail can say who
    # approved; a bare list gets names operator-1, operator-2, ...
    operator_tokens: tuple[SecretStr, ...] | dict[str, SecretStr] = ()

    @field_validator("webhook_tokens", "operator_tokens", mode="before")
    @classmethod
    def _checked(cls, v: Any) -> Any:
        # "${UNSET_VAR:-}" yields "": an optional token that is not set means no token
        # (dropped, so it can never let an empty credential in); anything else must
        # look like a real secret. Messages name the entry, never the value.
        if isinstance(v, list | tuple):
            return tuple(_token(t, f"entry {i}") for i, t in enumerate(v) if t not in ("", None))
        if isinstance(v, dict):
            return {k: _token(t, f"token {k!r}") for k, t in v.items() if t not in ("", None)}
        return v

    @model_validator(mode="after")
    def _separate(self) -> AuthSettings:
        # A token in both lists would make every Alertmanager peer (and whoever can
        # read its Secret) an operator: the separation would exist only on paper.
        webhook = {t.get_secret_value() for t in self.webhook_tokens}
        shared = [
            name
            for name, t in self.named_operator_tokens().items()
            if t.get_secret_value() in webhook
        ]
        if shared:
            raise ValueError(
                f"auth.operator_tokens {', '.join(shared)}: the same token is also in "
                "auth.webhook_tokens; operator and webhook tokens must differ"
            )
        return self

    def named_operator_tokens(self) -> dict[str, SecretStr]:
        if isinstance(self.operator_tokens, dict):
            return dict(self.operator_tokens)
        return {f"operator-{i + 1}": t for i, t in enumerate(self.operator_tokens)}
