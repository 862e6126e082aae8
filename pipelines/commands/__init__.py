"""One module per `llvbench` subcommand."""
