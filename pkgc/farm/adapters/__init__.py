"""Adapters behind the farm's ports: `local` (SQLite and a directory) and, later, `aws`."""
