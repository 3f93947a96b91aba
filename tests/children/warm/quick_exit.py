"""A unit run as `python -m tests.children.warm.quick_exit`: ends at once with exit 3."""

raise SystemExit(3)
