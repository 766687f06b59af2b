"""The fake cluster's own tests: its garbage collector, scheduler and kubelet, driven with the official client."""

from tests.support.fakekube.fixtures import fake_cluster, fake_cluster_factory  # noqa: F401
