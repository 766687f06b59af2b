"""The Kubernetes-mode fixtures (fake API server, test:///default) come from tests/kube."""

from tests.kube.conftest import cluster, libvirt_test_conn

__all__ = ["cluster", "libvirt_test_conn"]
