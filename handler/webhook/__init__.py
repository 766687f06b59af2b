"""The validating admission webhook (KubeVirt's virt-api role)."""
