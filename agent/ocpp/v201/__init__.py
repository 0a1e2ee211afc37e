"""The OCPP 2.0.1 adapter: handlers, the transaction journal, statuses, the session adapter."""
