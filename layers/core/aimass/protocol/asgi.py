"""ASGI plumbing both servers share (the Lambda API's app and the inference server), standard library
only as the rest of the protocol package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AnswerUnexpected:
    """The outermost layer: an exception no handler took is answered by `answer(scope, error)` (the
    server's 500 JSON) and goes no further. Starlette's own handler for `Exception` answers and then
    raises it again for the server to log, and uvicorn then drops the keep-alive connection without
    `Connection: close`, so a client's next request on it fails. An exception after the answer has
    started is raised as before: nothing well-formed can be sent any more."""

    def __init__(self, app: ASGIApp, answer: Callable[[Scope, Exception], ASGIApp]) -> None:
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            if started:
                raise
            await self.answer(scope, error)(scope, receive, send)
