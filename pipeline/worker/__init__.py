"""The Celery side: the app, the step tasks, leases, the reaper and the periodic tasks.

``celery -A pipeline.worker`` finds ``pipeline.worker.celery`` (Celery's own convention)."""
