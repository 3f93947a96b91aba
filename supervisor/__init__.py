"""supervise: a startup-orchestrating process supervisor.

Starts each model's units only once what they depend on holds, with the model's runtime
config injected into their environment at exec time, restarts exactly the units a config
change affects, and leaves no process behind.
"""

__version__ = "0.2.0"
