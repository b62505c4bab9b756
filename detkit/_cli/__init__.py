"""The command layer: the ``detkit`` subcommands, each group in its own module.

Each module adds its commands through an ``add_commands(subparsers)`` function;
a handler returns the exit status. Nothing below this layer imports it.
"""

from __future__ import annotations

from ._data import add_commands as add_data_commands
from ._import import add_commands as add_import_commands
from ._launch import add_commands as add_launch_commands
from ._plugins import add_commands as add_plugin_commands
from ._train import add_commands as add_training_commands

#: The command groups in the order ``detkit --help`` lists them.
COMMAND_GROUPS = (add_training_commands, add_import_commands, add_launch_commands, add_data_commands,
                  add_plugin_commands)

__all__ = ["COMMAND_GROUPS"]
