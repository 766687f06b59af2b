"""qat-handler: a per-node agent that gives Intel QAT virtual functions to VMs through libvirt and vfio."""

__version__ = "0.1.0"
