"""Every operator command of DESIGN §7: present, --json everywhere, no secret ever on argv."""

from __future__ import annotations

import argparse
import re

import pytest
from django.core.management import get_commands, load_command_class

from agentkey.core.cli import OperatorCommand

OPERATOR_COMMANDS = [
    "createorg",
    "createagent",
    "rotateagentkey",
    "suspendagent",
    "reactivateagent",
    "createtool",
    "rotatetoolcredential",
    "approve",
    "deny",
    "revoke",
    "assign",
    "dismisssuggestion",
    "audit_export",
    "rotate_master_key",
    "seed_demo",
    "export_catalog",
    "import_catalog",
]
SECRET_LIKE = re.compile(r"credential|secret|password|token|api_key|master", re.IGNORECASE)


def _command(name: str) -> OperatorCommand:
    command = load_command_class(get_commands()[name], name)
    assert isinstance(command, OperatorCommand), f"{name} does not use the shared operator shape"
    return command


def _actions(name: str) -> list[argparse.Action]:
    return list(_command(name).create_parser("manage.py", name)._actions)


@pytest.mark.parametrize("name", OPERATOR_COMMANDS)
def test_command_exists_with_help_and_a_json_flag(name):
    command = _command(name)
    assert command.help
    [json_flag] = [a for a in _actions(name) if "--json" in a.option_strings]
    assert json_flag.nargs == 0


@pytest.mark.parametrize("name", OPERATOR_COMMANDS)
def test_no_argument_takes_a_secret_value(name):
    for action in _actions(name):
        names = " ".join([action.dest, *action.option_strings])
        if SECRET_LIKE.search(names):
            assert action.nargs == 0, f"{name} {names} would put a secret on the command line"


def test_the_stdin_option_is_stealth_only():
    assert "stdin" in OperatorCommand.stealth_options
    for name in OPERATOR_COMMANDS:
        assert all("--stdin" not in a.option_strings for a in _actions(name))
