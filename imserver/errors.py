"""The documented error codes and the one exception type that carries them.

A handler raises ``ImError(code, message)``; the dispatcher turns it into an error frame.
Any other exception is a bug: it is logged once on the server and the client sees ``internal``.
"""

#: code -> meaning. This table is the source of the list in docs/protocol.rst.
CODES = {
    "bad_request": "The request is malformed: bad frame, bad JSON, missing or ill-typed field.",
    "unknown_op": "The server does not know this op.",
    "not_authenticated": "The op needs a logged-in session.",
    "bad_credentials": "Username, password or token is wrong.",
    "exists": "The thing to create exists already (username taken, ...).",
    "not_found": "The thing named does not exist (or is not visible to you).",
    "forbidden": "You may not do this.",
    "not_friends": "You can only message (or do this with) your friends.",
    "not_member": "You are not a member of that group.",
    "self_send": "You cannot send a message to yourself.",
    "empty_body": "The message body is empty.",
    "rate_limited": "Too many requests or failed attempts; try again later.",
    "too_many_connections": "The user already has as many connections as the server allows.",
    "too_large": "A frame, body or file is larger than the server allows.",
    "quota_exceeded": "Storing this would take you past your storage quota.",
    "checksum_mismatch": "The uploaded bytes do not have the declared size and SHA-256; they were discarded.",
    "unavailable": "The server cannot reach its database right now; retry later.",
    "internal": "An unexpected server error; it has been logged on the server.",
}


class ImError(Exception):
    """A failure whose code the client is meant to see."""

    def __init__(self, code, message, **extra):
        if code not in CODES:
            raise ValueError(f"undocumented error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def to_wire(self):
        error = {"code": self.code, "message": self.message}
        error.update(self.extra)
        return error


def bad_request(message):
    return ImError("bad_request", message)
