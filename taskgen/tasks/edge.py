"""Edge tasks (being written)."""
