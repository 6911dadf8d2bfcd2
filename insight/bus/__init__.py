"""The NATS bus: embedded server, connection, micro service, streams and consumers."""
