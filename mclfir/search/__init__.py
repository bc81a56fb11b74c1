"""Retrieval for users: per-attribute indexes of the catalogue, the search command and its result grid."""
