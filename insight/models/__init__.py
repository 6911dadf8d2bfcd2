"""Model management as one capability: the known-model registry, hub downloads, the service
behind the ``models.*`` endpoints (list, download, load, delete, re-embed), its handlers and
the ``insight models`` commands."""
