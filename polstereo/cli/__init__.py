"""The ``polstereo`` command-line tool suite (one module per command family)."""
