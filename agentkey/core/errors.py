"""One hierarchy of domain errors, rendered by one exception handler.

Services raise these with a :class:`Message` constant; the API layer renders
``{"error": ..., "hint": ..., **extra}``. Messages never contain secret values:
they are constants, formatted only with identifiers and names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Message:
    """A user-facing error: what went wrong and what to do next."""

    error: str
    hint: str

    def format(self, **values: object) -> Message:
        return Message(self.error.format(**values), self.hint.format(**values))


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class DomainError(Exception):
    """Base of every error a service may raise on purpose."""

    status: ClassVar[int] = 400

    def __init__(
        self,
        message: Message,
        /,
        *,
        details: list[FieldError] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message.error)
        self.message = message
        self.details = details or []
        self.extra = extra

    @property
    def error(self) -> str:
        return self.message.error

    @property
    def hint(self) -> str:
        return self.message.hint

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error, "hint": self.hint}
        if self.details:
            body["details"] = [{"field": d.field, "message": d.message} for d in self.details]
        body.update(self.extra)
        return body


class ValidationFailed(DomainError):
    status = 400

    @classmethod
    def from_details(cls, details: list[FieldError]) -> ValidationFailed:
        """The original AgentKey's shape: the first problem in ``error``, all in ``details``."""
        first = details[0] if details else FieldError("input", "Invalid input.")
        message = Message(f"Validation error: {first.message} (field: {first.field}).", VALIDATION_HINT)
        return cls(message, details=details)


class Unauthenticated(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class MethodNotAllowed(DomainError):
    status = 405


class Conflict(DomainError):
    status = 409


class PayloadTooLarge(DomainError):
    status = 413


class UnsupportedMediaType(DomainError):
    status = 415


class RateLimited(DomainError):
    status = 429

    def __init__(self, message: Message, /, *, retry_after: int, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)
        self.retry_after = retry_after
        self.ratelimit_state: object = None


class Unavailable(DomainError):
    status = 503


class CryptoError(Exception):
    """A secret could not be encrypted or decrypted.

    Deliberately not a DomainError: it is an operator problem (wrong or missing
    master key, tampered row), rendered as 503 without details. Its message
    names the secret and the key id, never key material or plaintext.
    """


# Messages shared by every HTTP surface.
NOT_FOUND = Message(
    "Not found.",
    "Check the URL and the id. List what you can see with GET /api/tools.",
)
METHOD_NOT_ALLOWED = Message(
    "Method {method} is not allowed here.",
    "Use one of: {allowed}. GET on a POST endpoint returns the body schema.",
)
VALIDATION_HINT = (
    "Check the request body matches the expected format. Call GET on the same endpoint to see the schema."
)
MALFORMED_JSON = Message(
    "Malformed JSON request body.",
    "Request body is not valid JSON. Send a JSON object with the header Content-Type: application/json.",
)
NOT_A_JSON_OBJECT = Message(
    "The request body must be a JSON object.",
    'Wrap the fields in an object, for example {"reason": "..."}. ' + VALIDATION_HINT,
)
UNSUPPORTED_MEDIA_TYPE = Message(
    "Expected an application/json request body.",
    "Set Content-Type: application/json.",
)
PAYLOAD_TOO_LARGE = Message(
    "Request body is too large.",
    "Request body exceeds {limit} bytes. Shorten the text fields and retry.",
)
RATE_LIMITED = Message(
    "Rate limit exceeded. Slow down and retry later.",
    "You are making requests too quickly ({tier} limit). Wait {retry_after} seconds and retry.",
)
UNSTORABLE_VALUE = Message(
    "A value in the request is too long or malformed to store.",
    "Shorten the text fields (names to 120 characters, URLs to 500) and send the request again.",
)
UNAVAILABLE = Message(
    "The service is temporarily unavailable.",
    "Retry in a few seconds. If this persists, tell a human operator.",
)
RATE_LIMITER_DOWN = Message(
    "The rate limiter is unavailable, so this request was refused.",
    "Retry in a few seconds. If this persists, tell a human operator that the cache is down.",
)
SERVER_ERROR = Message(
    "Internal error.",
    "Retry once; if it fails again, tell a human operator and quote the X-Request-ID header.",
)
