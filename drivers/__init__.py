"""Hardware drivers: energy meters, DC charge controllers, GPIO and RFID readers (no OCPP here)."""
