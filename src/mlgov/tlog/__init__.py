"""Transparency-log building blocks: canonical entries, RFC 9162 Merkle trees, C2SP signed notes."""
