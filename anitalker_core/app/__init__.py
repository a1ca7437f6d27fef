"""The headless command and batch runs: clip options, loading weights once per process, the command line."""
