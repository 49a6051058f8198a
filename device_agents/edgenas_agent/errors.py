"""The agent's structured errors: ``AgentFault(type, message)`` becomes ``{"error": {...}}`` on the wire."""

from __future__ import annotations


class AgentFault(Exception):
    """An error the host should see with a type from PROTOCOL.md (BadRequest, RuntimeMissing, ...)."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message

    def to_wire(self) -> dict:
        return {"type": self.type, "message": self.message}


def bad_request(message: str) -> AgentFault:
    return AgentFault("BadRequest", message)
