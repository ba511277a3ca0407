"""The Bolt App, built by a factory from settings — there is no module-level app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.runtime import Runtime
from bot.slack import actions, commands
from bot.slack.errors import handle_error

LISTENER_THREADS = 32


def build_client(runtime: Runtime) -> WebClient:
    settings = runtime.settings
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = WebClient(token=token, base_url=settings.slack_api_url, timeout=10)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    return client


def build_app(runtime: Runtime, client: WebClient | None = None) -> App:
    settings = runtime.settings
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = App(
        name="tflock",
        client=client or build_client(runtime),
        signing_secret=secret,
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="tflock-listener"),
        logger=logging.getLogger("tflock.slack"),
    )

    def inject_runtime(context: BoltContext, next: Callable[[], Any]) -> Any:
        context["runtime"] = runtime
        return next()

    app.use(inject_runtime)
    app.error(handle_error)
    commands.register(app)
    actions.register(app)
    return app
