"""`python -m dfbench` runs the CLI."""

from dfbench.cli import main

main()
