"""FUSE file systems of our own: latencyfs (a delay per operation, issue 19) and powercutfs
(a disk that loses power, issue 20); see mount.py, powercut.py and README.md."""
