"""v201: the OCPP 2.0.1 adapter."""
