"""Dubbing: new speech on an existing video (its own head, the new words on its lips)."""
