"""Power cuts for tests: a FUSE filesystem that forgets what was not synced."""
