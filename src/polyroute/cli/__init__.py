"""The command line: thin commands that call the parts of polyroute."""
