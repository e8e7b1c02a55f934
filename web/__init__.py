"""genline's web app: the REST API, the demo page and the operators' endpoints."""
from web.app import create_app

__all__ = ["create_app"]
