"""Bodies in and out of the log: ``payloads`` (where bodies come from: samples, files, stdin,
gzip), ``client`` (posting them), ``generate`` (realistic test events), ``importer``,
``export``, ``split`` (big reads on two cores), ``archive`` (prune's archive) and ``files``
(files written for the user, never over one before the new one is whole)."""
