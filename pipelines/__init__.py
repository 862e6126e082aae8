"""Orchestration: the `llvbench` command line and the DVC stage entry points (thin glue)."""
