"""Entry point for tests: the fake kube-apiserver lives in the ``fakekube`` package."""

from tests.support.fakekube import FakeApiServer, FaultRule, RequestRecord, ResourceType

__all__ = ["FakeApiServer", "FaultRule", "RequestRecord", "ResourceType"]
