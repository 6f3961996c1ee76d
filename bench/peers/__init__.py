"""Peer servers the HTTP benchmark measures aimass against: the same models, the same request bodies."""
