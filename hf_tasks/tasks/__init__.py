"""One module per task; each only fills a ``TaskSpec`` and registers it (see ``hf_tasks.registry``)."""
