"""One thin CLI module per DVC stage: read params, call ``sdl``, write the declared outputs."""
