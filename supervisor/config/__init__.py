"""Stack files, Procfiles, env files and interpolation: pure, no processes."""

from supervisor.config.load import LoadedStack, find_stack_file, load_stack, settings_value
from supervisor.config.model import Probe, Process, Settings, Stack

__all__ = [
    "LoadedStack",
    "Probe",
    "Process",
    "Settings",
    "Stack",
    "find_stack_file",
    "load_stack",
    "settings_value",
]
