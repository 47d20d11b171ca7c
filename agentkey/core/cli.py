"""The shared shape of operator commands.

Every command accepts ``--json``; success prints one JSON object (or
``key: value`` lines), failure prints the error and its hint to stderr and
exits non-zero. Secrets are read from stdin, never from argv, where they
would land in shell history and the process list.
"""

from __future__ import annotations

import getpass
import json
import sys
import uuid
from argparse import ArgumentParser
from collections.abc import Mapping
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agentkey.core.durations import parse_duration
from agentkey.core.errors import CryptoError, DomainError


class OperatorError(Exception):
    """Bad input on the command line."""

    def __init__(self, error: str, hint: str = "", *, exit_code: int = 1) -> None:
        super().__init__(error)
        self.error, self.hint, self.exit_code = error, hint, exit_code


class OperatorCommand(BaseCommand):
    #: ``call_command(..., stdin=io.StringIO(...))`` feeds secrets in tests and scripts.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
        self.add_command_arguments(parser)

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        """Subclasses add their own arguments here."""

    def run(self, **options: Any) -> Mapping[str, Any]:
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        as_json = bool(options.get("json"))
        self.stdin = options.get("stdin") or sys.stdin
        try:
            result = self.run(**options)
        except OperatorError as exc:
            self._fail(exc.error, exc.hint, as_json, exc.exit_code)
        except DomainError as exc:
            self._fail(exc.error, exc.hint, as_json)
        except CryptoError as exc:
            self._fail(str(exc), "Check AGENTKEY_MASTER_KEYS.", as_json)
        if as_json:
            self.stdout.write(json.dumps(result, default=str))
        else:
            for key, value in result.items():
                self.stdout.write(f"{key}: {value}")

    def _fail(self, error: str, hint: str, as_json: bool, exit_code: int = 1) -> None:
        if as_json:
            self.stderr.write(json.dumps({"error": error, "hint": hint}))
            raise SystemExit(exit_code)
        raise CommandError(f"{error} {hint}".strip(), returncode=exit_code)

    # --- input helpers ---

    @staticmethod
    def parse_uuid(value: str, what: str) -> uuid.UUID:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise OperatorError(f"{value!r} is not a valid {what} id.", f"Pass the {what}'s UUID.") from None

    @staticmethod
    def parse_duration_arg(value: str | None, what: str) -> Any:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise OperatorError(f"{what}: {exc}.", "Use forms like 30m, 8h, 7d.") from None

    def read_secret(self, what: str) -> str:
        """One value from stdin (a terminal gets a hidden prompt). One trailing newline is dropped."""
        if self.stdin.isatty():
            value = getpass.getpass(f"{what}: ")
        else:
            value = self.stdin.read()
            if value.endswith("\r\n"):
                value = value[:-2]
            elif value.endswith("\n"):
                value = value[:-1]
        if not value.strip():
            raise OperatorError(
                f"No {what} on stdin.",
                f'Pipe it in, for example: printf %s "$VALUE" | python manage.py {self._name()} ...',
            )
        return value

    def _name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]


def operator_label() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"manage.py ({user})"
