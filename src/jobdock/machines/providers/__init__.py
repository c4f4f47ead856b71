"""The machine providers, one module each (``docker``, ``command``, ``ec2``);
each has ``build(pool) -> Provider`` (``jobdock.machines.provider``)."""
