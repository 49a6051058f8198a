"""How to reach a device: profiles, transports (local subprocess, SSH), host-key trust, agent bundle, RPC session."""
