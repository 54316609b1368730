"""pkgc: packages compiled your way on a build farm, installed into any prefix."""

# The one place the version is written: pyproject.toml reads it from here (dynamic = ["version"]), so the wheel's
# metadata and `pkgc --version` cannot disagree.
__version__ = "0.1.0"
