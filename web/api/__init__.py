"""The /v1 REST API, one module per resource."""
