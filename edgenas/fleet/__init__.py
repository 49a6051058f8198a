"""Devices: transports (local subprocess, SSH), agent install and RPC, profiles, inventory, refresh."""
