"""Restoration tasks (being written)."""
