"""The package's version, in one place (results, MLflow tags and the wheel read it)."""

__version__ = "0.1.0"
