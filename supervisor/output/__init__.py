"""What the supervisor shows: formatting (pure) and the printer."""
