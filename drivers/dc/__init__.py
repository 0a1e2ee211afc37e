"""DC charge controllers (CCS, CHAdeMO): the evse-agent Modbus register map and its driver."""
