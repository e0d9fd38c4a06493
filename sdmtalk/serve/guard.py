"""ASGI guards in front of the whole app (API and page): the token and the request size."""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

COOKIE = "sdmtalk_token"


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class TokenGuard:
    """With a token set, every request must carry it: `Authorization: Bearer TOKEN`, the
    cookie this guard sets, or `?token=TOKEN` (which sets the cookie, so a browser opens
    the page once with it). Anything else: 401."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if self.token is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given, from_query = self._given(scope)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            what = "a wrong token" if given is not None else "no token"
            return await _send_error(send, 401, f"{what}: send 'Authorization: Bearer TOKEN' "
                                     "(or open the page once as /?token=TOKEN), TOKEN as given to sdmtalk serve --token")
        if not from_query:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        return await self.app(scope, receive, send_with_cookie)

    @staticmethod
    def _given(scope) -> tuple[str | None, bool]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        cookie = SimpleCookie(headers.get("cookie", ""))
        if COOKIE in cookie:
            return cookie[COOKIE].value, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        return (query[0], True) if query else (None, False)


class BodyLimit:
    """Requests whose body is over `limit` bytes get 413, by their Content-Length at once,
    or as soon as a streamed body passes the limit (nothing larger is ever spooled)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body over {self.limit / 2**20:.1f} MB: send smaller files (sdmtalk serve --max-upload-mb)"
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_error(send, 413, message)
        seen, answered = 0, False

        async def counted_receive():
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.limit:  # answer now; the app sees a client that went away
                answered = True
                await _send_error(send, 413, message)
                return {"type": "http.disconnect"}
            return event

        async def guarded_send(event):
            if not answered:
                await send(event)

        await self.app(scope, counted_receive, guarded_send)
