"""Request handlers, one module per capability; ``ROUTERS`` is the endpoint table."""

from insight.handlers import system

ROUTERS = [system.router]
