"""Stack files, Procfiles, env files and interpolation: pure, no processes.

Kept empty so that `supervisor.config.locate` (standard library only) can be imported by
client commands without loading pydantic.
"""
