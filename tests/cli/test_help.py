"""``seqlrp --help``: every option of every command has help text and says its default; examples; --version."""

from __future__ import annotations

import argparse

import pytest

import seqlrp
from seqlrp.cli import main, parser


def _commands():
    top = parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return top, sub.choices


def test_every_option_has_help_and_its_default():
    top, commands = _commands()
    assert set(commands) == {"demo", "explain-text", "explain-image", "explain-dataset", "report-dataset"}
    for name, command in commands.items():
        formatter = command._get_formatter()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, f"{name} {action.dest}: no help text"
            if action.option_strings:
                shown = formatter._get_help_string(action) % {"default": action.default}
                assert "(default:" in shown or shown.endswith("(required)"), f"{name} {action.option_strings}: {shown}"
        assert "example" in (command.epilog or ""), f"{name}: no examples in the epilog"
        assert f"seqlrp {name}" in command.epilog


@pytest.mark.parametrize(("command", "default"), [("explain-image", "(default: 224)"),
                                                  ("explain-text", "(default: <unk>)")])
def test_help_text_shows_defaults_and_examples(command, default, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert default in text and "(default: off)" in text and "(required)" in text
    assert "examples:" in text and "--labels FILE" in text
    assert "(default: None)" not in text


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"seqlrp {seqlrp.__version__}"
