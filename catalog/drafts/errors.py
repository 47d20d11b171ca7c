"""Why a draft failed, in words safe to store and show: constants formatted with numbers and names only."""

from __future__ import annotations

from agentkey.core.errors import Message


class DraftFailed(Exception):
    """Generation stopped; the draft is marked failed with this message and keeps no content."""

    def __init__(self, message: Message) -> None:
        super().__init__(message.error)
        self.message = message

    @property
    def text(self) -> str:
        return f"{self.message.error} {self.message.hint}".strip()[:500]


PAGE_STATUS = Message(
    "The documentation URL answered HTTP {status}.",
    "Check that the page opens in a browser without signing in, then try again.",
)
NOT_A_PAGE = Message(
    "The documentation URL is not a web page ({content_type}).",
    "Use the URL of an HTML or plain-text documentation page.",
)
TOO_LITTLE_TEXT = Message(
    "The page has too little text to draft a guide from ({count} letters and digits; at least {minimum} are needed).",
    "Use the page that explains authentication (API keys, tokens, scopes). Pages that need JavaScript "
    "or a sign-in to show their text cannot be read.",
)
MODEL_STATUS = Message(
    "The language model answered HTTP {status}.",
    "Check AGENTKEY_LLM_BASE_URL, AGENTKEY_LLM_MODEL and the API key, or try again later.",
)
MODEL_UNREACHABLE = Message(
    "Could not reach the language model ({reason}).",
    "Check AGENTKEY_LLM_BASE_URL and that the model server is up.",
)
MODEL_TIMED_OUT = Message(
    "The language model did not finish within {seconds} seconds.",
    "Try again; a long page takes longer.",
)
MODEL_BROKE_OFF = Message(
    "The language model's stream broke off before it finished.",
    "Try again. Nothing was saved from the interrupted answer.",
)
MODEL_MALFORMED = Message(
    "The language model's stream was not in the chat-completions format.",
    "Check that AGENTKEY_LLM_BASE_URL points at an OpenAI-compatible /v1 endpoint.",
)
MODEL_REPORTED = Message(
    "The language model reported an error while answering.",
    "Try again later.",
)
MODEL_EMPTY = Message("The language model returned no text.", "Try again, or use another documentation page.")
DRAFT_TOO_LONG = Message(
    "The draft grew past {limit:,} characters, the usage-guide limit.",
    "Try a more specific documentation page (the authentication page rather than the whole reference).",
)
INTERNAL = Message(
    "The draft could not be written because of an internal error.",
    "Try again; if it persists, tell your operator.",
)
