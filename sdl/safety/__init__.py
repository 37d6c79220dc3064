"""Safety at the bottom of the house, used everywhere: atomic file writes (``atomic``), file
locks that vanish with their holder (``locks``), a restricted unpickler (``safe_pickle``) and
the redaction of credentials from logs and records (``redaction``). Imports nothing of ``sdl``."""
