"""genline's pipeline: the job store, the Celery tasks, providers and storage."""
