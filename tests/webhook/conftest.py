"""Fixtures for the webhook tests: the fake API server."""

from tests.support.fakekube.fixtures import fake_apiserver  # noqa: F401
