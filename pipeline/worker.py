"""The worker entry: what the Procfile, beat and Flower name (``-A pipeline.worker``)."""
from web.app import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
