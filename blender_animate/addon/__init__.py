"""The add-on's Blender-free runtime (stdlib only): the child processes it starts (generator, doctor
check, environment build) and what it keeps of them (run state, check summaries)."""
