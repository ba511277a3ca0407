"""The Bolt App, built by a factory from settings — there is no module-level app."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryState
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.runtime import Runtime
from bot.slack import actions, commands
from bot.slack.errors import handle_error
from bot.slack.messages import ApprovalMessages
from bot.slack.notify import Notifier
from bot.slack.people import People, SlackUsers
from bot.unlock.notify import NotifyMode, RequestNotices
from bot.unlock.policy import UnlockPolicy
from bot.unlock.workflow import UnlockWorkflow

log = logging.getLogger(__name__)
LISTENER_THREADS = 8  # Bolt's executor (lazy listeners only); every listener here acks and hands off


@dataclass
class SlackBot:
    """The app and what its listeners (and the server's background jobs) are handed."""

    app: App
    runtime: Runtime
    people: People
    workflow: UnlockWorkflow
    messages: ApprovalMessages
    notifier: Notifier


SLACK_TIMEOUT = 10  # seconds for any Web API call from a worker
MODAL_TIMEOUT = 2  # views.open runs inside the listener: it must leave room for the 3 s ack
MAX_RETRY_AFTER = 30.0  # seconds; a longer Retry-After fails the call (and the person is told) instead


class RateLimitRetry(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (waits Retry-After, then tries again), but never for longer than `longest`:
    a worker must not sleep for minutes because Slack asked it to."""

    def __init__(self, max_retry_count: int, longest: float = MAX_RETRY_AFTER) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.longest = longest

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), ["1"])
        try:
            return float(wait[0]) <= self.longest
        except (TypeError, ValueError, IndexError):
            return True  # no usable header: the parent waits about a second


def build_client(runtime: Runtime, timeout: int = SLACK_TIMEOUT, *, rate_limit_retries: int = 3) -> WebClient:
    """A Web API client whose every call has a timeout and honours 429 Retry-After (slack_sdk's handler)."""
    settings = runtime.settings
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = WebClient(token=token, base_url=settings.slack_api_url, timeout=timeout)
    if rate_limit_retries:
        client.retry_handlers.append(RateLimitRetry(max_retry_count=rate_limit_retries))
    return client


def build_bot(runtime: Runtime, client: WebClient | None = None) -> SlackBot:
    settings = runtime.settings
    client = client or build_client(runtime)
    people = People(client, settings.approvers, settings.auditors)
    if not people.audit_configured:
        log.warning(
            "neither TFLOCK_AUDITORS nor TFLOCK_APPROVERS is set: /tflock audit is refused to everyone, and any "
            "full member of the workspace can approve force-unlocks; set them to Slack user or group IDs"
        )
    workflow = UnlockWorkflow(
        runtime.sessions,
        runtime.directory,
        UnlockPolicy.from_settings(settings, people.is_approver),
        runtime.clock,
        on_reconcile_failure=runtime.metrics.reconcile_failures.inc,
        on_history_missed=runtime.metrics.history_missed.inc,
    )
    messages = ApprovalMessages(client, workflow)
    notifier = Notifier(
        client,
        RequestNotices(workflow, settings.escalate_after),
        messages,
        people,
        SlackUsers(client),
        mode=NotifyMode(settings.notify),
        escalate_channel=settings.escalate_channel,
    )
    if settings.escalate_after >= settings.request_ttl:
        log.warning(
            "TFLOCK_ESCALATE_AFTER (%s) is not shorter than TFLOCK_REQUEST_TTL (%s): requests expire before they "
            "would be escalated",
            settings.escalate_after,
            settings.request_ttl,
        )
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    # A modal must open while the click's trigger_id is valid (3 s): a short timeout and no 429 waits.
    modal_client = build_client(runtime, MODAL_TIMEOUT, rate_limit_retries=0)
    modal_client.token = client.token
    modal_client.base_url = client.base_url
    app = App(
        name="tflock",
        client=client,
        signing_secret=secret,
        # Slack may be unreachable at start: serve checks the token itself (bot/server.py) and stays up.
        token_verification_enabled=False,
        # Listeners only ack and hand the slow part to the work pool, so they run in the request's own
        # thread: the ack goes out at once instead of at Bolt's next 10 ms poll of a listener thread.
        process_before_response=True,
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="tflock-listener"),
        logger=logging.getLogger("tflock.slack"),
    )
    services = {
        "runtime": runtime,
        "people": people,
        "workflow": workflow,
        "messages": messages,
        "notifier": notifier,
        "modal_client": modal_client,
    }

    def inject_services(context: BoltContext, next: Callable[[], Any]) -> Any:
        context.update(services)  # Bolt hands context keys to listeners as keyword arguments
        return next()

    app.use(inject_services)
    app.error(handle_error)
    commands.register(app)
    actions.register(app)
    return SlackBot(app, runtime, people, workflow, messages, notifier)
