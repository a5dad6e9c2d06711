"""The command line: thin glue over curate.stages and curate.io."""
