"""Built-in task modules; importing one registers its tasks."""
