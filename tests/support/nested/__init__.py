"""Scaffolding of the nested VFIO test (tests/nested/): a real PCI device, passed through by the agent.

There is no QAT card here, and no VFIO on the host, so the test makes a host that has them:

    host (pytest, L0)
      └─ L1: QEMU under TCG, q35 + emulated Intel IOMMU + QEMU's "edu" PCI device (1234:11e8)
           │  Debian's generic kernel; the host's /usr, this checkout and its virtualenv over 9p
           │  (read-only, same paths), so `qat-handler` and libvirtd run there as on the host
           ├─ libvirtd (the host's binary, config from libvirt/ here)
           ├─ qat-handler agent --domain-type qemu --permitted-devices FILE (edu permitted)
           └─ L2: the agent's guest, edu passed through with a vfio <hostdev>
                Debian's cloud kernel; /init is l2_init.c: lists PCI functions, checks edu's
                ID and liveness registers through its BAR, prints a marker, waits for ACPI

Modules, in the order they are used:

``packages``   fetches the kernel and busybox .debs with ``apt-get download`` and unpacks
               the kernels, the modules L1 needs (with their dependencies) and busybox;
``initramfs``  writes both initramfs images (L1: busybox + ``l1-init.sh``; L2: ``l2_init.c``
               compiled statically);
``l1``         boots L1 and runs shell scripts in it through a command channel, a directory
               shared over 9p (``l1-channel.sh`` is the L1 side);
``node``       what the test does on L1, the way an operator would on a real host: start
               libvirtd, bind the device to vfio-pci, run the agent, write VMI manifests,
               read the status file, allocations, serial logs and the agent's log.
"""
