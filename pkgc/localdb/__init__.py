"""The client's record of what is installed in a prefix, file by file (SQLite through SQLAlchemy)."""
