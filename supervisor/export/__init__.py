"""`supervise export`: what Kubernetes, systemd and Docker Compose run instead of
`supervise run`, keeping the start gate and the inject allowlist, with a report of what a
target cannot keep. Pure: every target turns an `ExportPlan` into file texts; only
`supervisor.export.cli` writes them."""
