"""Stylization tasks (being written)."""
