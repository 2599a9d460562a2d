"""The `jfacemap` command: a thin typer layer over the pure functions, one module per stage."""
