"""The technician interface: a Unix-socket server in the daemon and its client, `evsectl`."""
