"""``medsign serve``: the API server under gunicorn (see :mod:`appliance.server`)."""

from __future__ import annotations

import dataclasses

import click

from appliance.cli._common import config_option, load_config


@click.command(name="serve")
@config_option
@click.option("--bind", metavar="HOST:PORT", help="listen here instead of server.bind")
@click.option("--access-log", metavar="FILE", help="write an access log to FILE ('-': stdout)")
def serve_command(config_path: str | None, bind: str | None, access_log: str | None) -> int:
    """Run the API server (gunicorn; stops gracefully on SIGTERM)."""
    from appliance import server  # noqa: PLC0415 -- keeps CLI start-up fast

    config = load_config(config_path)
    if bind:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, bind=bind))
    return server.serve(config, access_log=access_log)


COMMANDS = (serve_command,)
