"""The controller (KubeVirt's virt-controller role): launcher pods and phases for every VMI."""
