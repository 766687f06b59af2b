"""The pure core: VMI model, device resolution, domain XML and planning.

Nothing in here may import the shell (libvirt, kubernetes, watchdog, signal handling);
the import-linter contract in setup.cfg enforces it.
"""
