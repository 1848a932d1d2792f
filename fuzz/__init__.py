"""atheris fuzz harnesses, one per input surface (see fuzz/README.md)."""
