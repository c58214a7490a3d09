"""The receiver: an aiohttp service that stores each cohort webhook message before answering.

POST (any path but /health): Basic auth checked in constant time, the body read up to
`max_body_megabytes` and checked, then stored in the spool (fsync'd, or a finished upload) in a
worker thread; only then `success`. GET /health: the counts so far. Bodies and secrets never
reach the log: one line per message names its action, cohort, page and member count.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import sys
from collections import Counter
from importlib import metadata

from aiohttp import web

from mixpanel_cohort_receiver.settings import ReceiverSettings, SettingError
from plugin_support.cohort_webhook_messages import (
    MALFORMED,
    NOT_STORED,
    STORED,
    UNAUTHORIZED,
    MessageError,
    answer,
    read_message,
)
from plugin_support.distribution import DISTRIBUTION
from plugin_support.redaction import Redactor
from plugin_support.storage_location import StorageLocationError, option_secrets
from plugin_support.webhook_spool import WebhookSpool

logger = logging.getLogger("mixpanel_cohort_receiver")


class Receiver:
    """Checks, stores and answers each message; counts what it did."""

    def __init__(self, settings: ReceiverSettings, spool: WebhookSpool):
        self.settings = settings
        self.spool = spool
        self.counts: Counter[str] = Counter()
        self.max_body = int(settings.max_body_megabytes * 1024 * 1024)
        self._expected = (f"{settings.username}:{settings.password}".encode()
                          if settings.username else None)
        self._redact = Redactor([settings.password, *option_secrets(settings.spool_options
                                                                    or {})])

    def app(self) -> web.Application:
        """The aiohttp application (health check and webhook)."""
        app = web.Application(client_max_size=self.max_body)
        app.router.add_get("/health", self.health)
        app.router.add_post("/{path:.*}", self.webhook)
        return app

    async def health(self, request: web.Request) -> web.Response:
        """200 with the counts: messages stored, duplicates, refused, failed to store."""
        return web.json_response({"status": "ok", **self.counts})

    def _authorized(self, request: web.Request) -> bool:
        if self._expected is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        try:
            given = base64.b64decode(credentials.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
        return scheme.lower() == "basic" and hmac.compare_digest(given, self._expected)

    def _refuse(self, code: int, action: str | None, why: str) -> web.Response:
        self.counts["refused" if code != NOT_STORED else "failed"] += 1
        logger.warning("answered %d: %s", code, why)
        return web.json_response(answer(action, code, why), status=code)

    async def webhook(self, request: web.Request) -> web.Response:
        """Store one message durably, then answer success (or say why not)."""
        if not self._authorized(request):
            return self._refuse(UNAUTHORIZED, None, "wrong or missing Basic auth: check the "
                                "webhook connection's user name and password")
        if (request.content_length or 0) > self.max_body:
            return self._refuse(MALFORMED, None, self._too_large())
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(MALFORMED, None, self._too_large())
        try:
            message = read_message(body)
        except MessageError as exc:
            return self._refuse(MALFORMED, None, str(exc))
        parameters = message.parameters
        loop = asyncio.get_running_loop()
        try:
            _, new = await loop.run_in_executor(None, self.spool.store,
                                                   str(parameters.mixpanel_cohort_id), body)
        except ValueError as exc:  # a cohort id that is no id
            return self._refuse(MALFORMED, message.action, str(exc))
        except Exception as exc:  # disk full, a storage error: Mixpanel retries
            why = self._redact(f"could not store the message: {type(exc).__name__}: {exc}")
            return self._refuse(NOT_STORED, message.action, why)
        self.counts["stored" if new else "duplicates"] += 1
        page = parameters.page_info
        logger.info("%s %s of cohort %s (%d members, session %s): %s", message.action,
                    f"page {page.page_count}/{page.total_pages}" if page else "message",
                    parameters.mixpanel_cohort_id, len(parameters.members),
                    parameters.mixpanel_session_id, "stored" if new else "stored already")
        return web.json_response(answer(message.action, STORED), status=STORED)

    def _too_large(self) -> str:
        return (f"the body is larger than max_body_megabytes "
                f"({self.settings.max_body_megabytes} MB): raise it on the receiver")


NAME = "mixpanel-cohort-receiver"


def describe(argv: list[str]) -> str | None:
    """What `--version` or `--about` print (as the Singer plugins answer them); else None."""
    version = metadata.version(DISTRIBUTION)
    if "--version" in argv:
        return f"{NAME} v{version}"
    if "--about" in argv:
        return json.dumps({"name": NAME, "version": version, "description": __doc__.split("\n")[0],
                           "settings": ReceiverSettings.schema()}, indent=2)
    return None


def main(argv: list[str] | None = None) -> None:
    """Command line: read the settings, open the spool, serve until SIGTERM/SIGINT."""
    about = describe(sys.argv[1:] if argv is None else argv)
    if about is not None:
        print(about)
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ReceiverSettings.from_sources(argv)
        spool = WebhookSpool(settings.spool_url, dict(settings.spool_options or {}))
    except (SettingError, StorageLocationError) as exc:
        logger.error("%s", exc)
        raise SystemExit(2) from None
    receiver = Receiver(settings, spool)
    logger.info("listening on %s:%d, storing into %s%s", settings.host, settings.port,
                settings.spool_url.split("@")[-1],
                "" if settings.username else " (no auth: keep it unreachable from outside)")
    web.run_app(receiver.app(), host=settings.host, port=settings.port, print=None,
                access_log=None, shutdown_timeout=30)


if __name__ == "__main__":
    main()
