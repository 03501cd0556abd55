#!/usr/bin/env python3
"""The reference server of bench/api.py: a bare Falcon app (no middleware) answering
``GET /api/v1/whoami`` with a JSON body shaped like medsign's, served by gunicorn with exactly
the settings ``medsign serve`` uses for the same configuration
(``appliance.server.gunicorn_settings``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

import falcon
from gunicorn.app.base import BaseApplication

from appliance import config as config_module
from appliance.server import gunicorn_settings


class WhoAmI:
    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"kind": "app", "name": "app_0000000000000000", "id": 1, "role": None,
                      "scopes": ["verify"]}


def hello_app() -> falcon.App[falcon.Request, falcon.Response]:
    app: falcon.App[falcon.Request, falcon.Response] = falcon.App()
    app.add_route("/api/v1/whoami", WhoAmI())
    return app


class HelloApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._settings.items():
            if name in self.cfg.settings:
                self.cfg.set(name, value)

    def load(self) -> Any:
        return hello_app()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--bind", required=True)
    args = parser.parse_args(argv)
    config = config_module.load(args.config, env={})
    config = dataclasses.replace(config, server=dataclasses.replace(config.server,
                                                                    bind=args.bind))
    settings = {**gunicorn_settings(config), "proc_name": "medsign-bench-hello"}
    HelloApplication(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
