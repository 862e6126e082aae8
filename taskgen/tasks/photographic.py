"""Photographic style task (being written)."""
