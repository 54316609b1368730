"""One module per CLI command: parse, call a use case, render its result (human or --json)."""
