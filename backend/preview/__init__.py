"""The preview generator's image operations: forward splatting, hole filling, reference-video flow."""
