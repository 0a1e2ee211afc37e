"""The services the back office asks for besides charging: firmware, diagnostics, file transfers.

Each is given the narrow ports it needs by agent/daemon.py; none imports the runtime.
"""
