"""The worker entry: what the Procfile, beat and Flower name (``-A pipeline.worker``).

Under ``-P gevent`` Celery monkey-patches the standard library before this
module is imported; psycopg2 is C code and needs psycogreen's wait callback as
well, set here before the app opens any database connection, or every query
would block all the jobs waiting in the process.

The app is the pipeline's own (``pipeline.app``): config, database and Celery,
none of the web's routes.
"""
from gevent import monkey

if monkey.is_module_patched("socket"):
    from psycogreen.gevent import patch_psycopg
    patch_psycopg()

from pipeline.app import create_app  # noqa: E402 - after the patch above

flask_app = create_app()
celery = flask_app.extensions["celery"]
