"""Command-line interface: thin click commands, one module each, each one library call."""
