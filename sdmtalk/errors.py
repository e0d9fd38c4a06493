"""Errors a user can fix. The CLI prints their message as one line and exits non-zero."""


class InputError(Exception):
    """Bad user input: the message names the file and says what to do."""


class NoFaceError(InputError):
    """No usable face in a photo or a video frame."""


class AudioError(InputError):
    """Audio that cannot be decoded, is empty, or holds no speech."""
