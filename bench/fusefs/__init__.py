"""latencyfs: a FUSE passthrough file system with a delay per operation (issue 19); see mount.py."""
