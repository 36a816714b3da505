"""Subcommands' command-line edges (argument handling, files, printing) that belong to no lower layer."""
