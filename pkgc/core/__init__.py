"""The shared vocabulary of client, farm and worker.

Nothing in this package imports a CLI, web, database or cloud library: it is pure data and pure functions, so
the rules it states (what a name, a version, an option or a build key is) are the same on every side.
"""
