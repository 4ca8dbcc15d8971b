"""`whitebox` on the command line: a thin layer over whitebox.run / whitebox.resume and the probe API."""

from whitebox.cli.main import main

__all__ = ["main"]
