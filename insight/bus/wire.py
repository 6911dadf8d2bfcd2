"""How a request and its reply travel on the bus.

Request: msgpack (or JSON with header ``Content-Type: application/json``) of the endpoint's
request schema. Reply: the reply schema in the format the ``Accept`` header asks for (msgpack by
default). Errors: micro service headers ``Nats-Service-Error`` (message) and
``Nats-Service-Error-Code`` (HTTP status), and the one error shape in the body.
"""

from __future__ import annotations

from insight.codec import Format, format_of

ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
CONTENT_TYPE = "Content-Type"
ACCEPT = "Accept"
REQUEST_ID = "Insight-Request-Id"


def request_format(headers: dict[str, str] | None) -> Format:
    return format_of((headers or {}).get(CONTENT_TYPE)) or Format.MSGPACK


def reply_format(headers: dict[str, str] | None) -> Format:
    return format_of((headers or {}).get(ACCEPT)) or Format.MSGPACK
