"""Enhancement tasks (being written)."""
