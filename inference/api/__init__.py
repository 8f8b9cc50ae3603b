"""The HTTP API: app factory, one dependency module, thin routes, error handlers, request middleware.

``create_app(settings)`` builds the app; its lifespan opens the record, loads the models and starts the
workers. Routes call :mod:`inference.services`; see ``docs/api.md`` for every endpoint.
"""

from inference.api._app import create_app
from inference.api._serve import serve
from inference.services import registry_fetch

__all__ = ["create_app", "registry_fetch", "serve"]
