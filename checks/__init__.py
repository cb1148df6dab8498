"""Built-in tfaudit checks, registered through the ``tfaudit.checks`` entry-point group."""
