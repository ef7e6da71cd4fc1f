"""The security suite deposits with the DMP tests' organisation credentials (one fixture, shared)."""

from tests.dmp.conftest import credentials

__all__ = ["credentials"]
