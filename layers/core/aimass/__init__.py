"""aimass: serverless ML predictions with versioning, safe rollout and monitoring."""

__version__ = "0.1.0"
