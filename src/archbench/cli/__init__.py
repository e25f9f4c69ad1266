"""Small console entry points; each reports user errors as one line and exit code 2."""
