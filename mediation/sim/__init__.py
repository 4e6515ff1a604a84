"""The simulated SDK, the demo (the main job), the local dev stack and seeding.
Development and verification tooling; nothing below this floor imports it."""
