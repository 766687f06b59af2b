"""The validating admission webhook (the virt-api role): HTTPS server, certificates, gate watch."""
