"""Entrypoint shims for platforms that run units without supervise: `supervise exec` (keys at
exec time, publishing, readiness markers) and `supervise wait` (a readiness probe as a
command). They run as container entrypoints and as probes, so `wait` imports the standard
library only, and `exec` replaces itself with the command whenever it can."""
