"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests of the real PTB Application.

It speaks the wire format python-telegram-bot 22 uses (see docs/telegram.md and https://core.telegram.org/bots/api):
POST /bot<token>/<method> with urlencoded, multipart, JSON or query parameters; answers
`{"ok": true, "result": ...}` or Telegram's error shape with the HTTP status PTB maps to an
exception. It enforces the limits PTB does not check on the client side (text length,
callback_data bytes, answer text), holds getUpdates as a long poll, and injects faults:
`fake.faults["sendMessage"] = [(429, "Too Many Requests: retry after 1", {"retry_after": 1})]`.

`fake.enforce(scale)` makes it pace like Telegram (about one message a second per chat, 20 a
minute per group, 30 a second per bot; `scale` 0.01 runs that clock 100 times faster): a message
beyond them is answered 429 with `retry_after` and recorded in `fake.violations`. An outage is
`fake.outage = 502` (every method answers that status) or `await fake.refuse()` / `await
fake.accept()` (the port closes: connection refused, then opens again).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 123456
TOKEN = f"{BOT_ID}:TESTTOKEN-abcdefghijklmnopqrstuvwxyz0"
BOT_USERNAME = "test_bot"
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_ANSWER_TEXT = 200
JSON_FIELDS = ("reply_markup", "commands", "allowed_updates", "entities", "link_preview_options", "scope")
INT_FIELDS = ("chat_id", "message_id", "offset", "timeout", "limit")
PACED = ("sendmessage", "sendphoto", "editmessagetext", "editmessagereplymarkup")  # what Telegram counts
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)


SCOPE_FIELDS = {"default": (), "all_private_chats": (), "all_group_chats": (), "all_chat_administrators": (),
                "chat": ("chat_id",), "chat_administrators": ("chat_id",), "chat_member": ("chat_id", "user_id")}


def scope_key(scope: dict[str, Any]) -> tuple[Any, ...]:
    """A BotCommandScope as a key: ("default",), ("chat", chat_id), ("chat_member", chat_id, user_id), ...;
    an unknown type or a missing field is Telegram's 400."""
    fields = SCOPE_FIELDS.get(scope.get("type", ""))
    if fields is None or any(f not in scope for f in fields):
        raise ApiError(400, f"Bad Request: can't parse BotCommandScope: {scope}")
    return (scope["type"], *(int(scope[f]) for f in fields))


def chat_of(chat_id: int) -> dict[str, Any]:
    """A private chat has the user's (positive) id; a group's id is negative."""
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Op"}
    return {"id": chat_id, "type": "group", "title": "Desk operators"}


def user_of(user_id: int, username: str | None) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": "Op", **({"username": username} if username else {})}


def _text(params: dict[str, Any], too_long: str) -> str:
    """A message's text as Telegram takes it: not blank, at most MAX_TEXT UTF-16 code units (each method
    words the too-long error its own way)."""
    text = str(params.get("text", ""))
    if not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
        raise ApiError(400, too_long)
    return text


def _set_markup(message: dict[str, Any], params: dict[str, Any]) -> None:
    """The message keeps the request's keyboard, or none."""
    message.pop("reply_markup", None)
    if params.get("reply_markup"):
        message["reply_markup"] = params["reply_markup"]


@dataclass(frozen=True)
class TelegramLimits:
    """Telegram's flood limits as this fake applies them (its own reading, not the bot's)."""

    chat_interval: float = 1.0
    group_count: int = 20
    group_span: float = 60.0
    bot_count: int = 30
    bot_span: float = 1.0

    def scaled(self, factor: float) -> TelegramLimits:
        return TelegramLimits(self.chat_interval * factor, self.group_count, self.group_span * factor,
                              self.bot_count, self.bot_span * factor)


@dataclass(frozen=True)
class Violation:
    method: str
    chat_id: int
    rule: str
    at: float


class ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    content_type: str
    at: float
    status: int = 200
    result: Any = None
    files: dict[str, bytes] = field(default_factory=dict)


class FakeTelegram:
    """The fake server's state and handlers. Start with `await fake.start()`; stop with `await fake.stop()`."""

    def __init__(self, token: str = TOKEN, bot_username: str = BOT_USERNAME) -> None:
        self.token = token
        self.bot_user = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": "Test Bot",
                         "username": bot_username}
        self.calls: list[Call] = []
        self.faults: dict[str, list[tuple[int, str, dict[str, Any] | None]]] = {}
        self.commands: list[dict[str, Any]] = []  # the default scope's menu
        self.menus: dict[tuple[Any, ...], list[dict[str, Any]]] = {}  # scope key (see scope_key) -> menu
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.url = ""
        self.limits: TelegramLimits | None = None
        self.violations: list[Violation] = []
        self.outage: int | None = None  # every method answers this HTTP status while set
        self._sent: dict[int | None, deque[float]] = {}  # accepted paced calls per chat (None: the whole bot)
        self._site: web.TCPSite | None = None
        self._port = 0
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._query_ids = itertools.count(4711)
        self._new_update = asyncio.Event()
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None

    # --- lifecycle -----------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        await self.accept()
        self.url = f"http://127.0.0.1:{self._port}"
        return self.url

    async def refuse(self) -> None:
        """Close the port: every request now fails with "connection refused"."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self._runner.server if self._runner else None
        for connection in list(server.connections if server else ()):  # kept-alive ones too
            connection.force_close()

    async def accept(self) -> None:
        """(Re)open the port the server started on."""
        assert self._runner is not None
        if self._site is None:
            self._site = web.TCPSite(self._runner, "127.0.0.1", self._port)
            await self._site.start()
            self._port = self._port or self._runner.addresses[0][1]

    def enforce(self, scale: float = 1.0) -> None:
        """Answer 429 to messages beyond Telegram's limits (`scale`: the length of a second) and record them."""
        self.limits = TelegramLimits().scaled(scale)

    async def stop(self) -> None:
        self._closing = True
        self._new_update.set()  # wake long polls, else cleanup waits for them
        if self._runner:
            await self._runner.cleanup()

    # --- test helpers: what the operator does --------------------------------------
    def push_command(self, chat_id: int, text: str, *, user_id: int | None = None,
                     username: str | None = None) -> dict[str, Any]:
        """Queue a message from `chat_id` (a negative id is a group, as on Telegram) sent by `user_id`
        (default: the private chat's user); a leading /command gets its bot_command entity."""
        command = text.split()[0] if text.startswith("/") else ""
        entities = [{"type": "bot_command", "offset": 0, "length": len(command)}] if command else []
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat_of(chat_id),
            "from": user_of(user_id or chat_id, username),
            "text": text,
            "entities": entities,
        }
        return self._push({"message": message})

    def push_callback(self, chat_id: int, message_id: int, data: str, *, user_id: int | None = None,
                      username: str | None = None) -> dict[str, Any]:
        """Queue a press of an inline button under the bot's message `message_id`."""
        message = self.messages.get((chat_id, message_id)) or {
            "message_id": message_id, "date": int(time.time()), "chat": chat_of(chat_id),
            "from": self.bot_user, "text": "(unknown)",
        }
        query = {
            "id": str(next(self._query_ids)),
            "chat_instance": str(-chat_id),
            "from": user_of(user_id or chat_id, username),
            "message": message,
            "data": data,
        }
        return self._push({"callback_query": query})

    def _push(self, payload: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), **payload}
        self._updates.append(update)
        self._new_update.set()
        return update

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.status == 200]

    async def wait_for(self, method: str, n: int = 1, timeout: float = 10.0) -> list[Call]:
        """Wait until `method` has succeeded at least n times; returns those calls."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.calls_of(method)) >= n), timeout)
        return self.calls_of(method)

    def sent_texts(self, chat_id: int | None = None) -> list[str]:
        return [c.params.get("text", "") for c in self.calls_of("sendMessage")
                if chat_id is None or c.params.get("chat_id") == chat_id]

    # --- dispatch ------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files, content_type = await self._params(request)
        call = Call(method, params, content_type, time.monotonic(), files=files)
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if self.outage is not None:
                raise ApiError(self.outage, "Bad Gateway")
            if queued := self.faults.get(method):
                status, description, parameters = queued.pop(0)
                raise ApiError(status, description, parameters)
            handler = getattr(self, f"_m_{method.lower()}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            if method.lower() in PACED:
                self._pace(method, params.get("chat_id"), call.at)
            call.result = await handler(params, files)
            body: dict[str, Any] = {"ok": True, "result": call.result}
        except ApiError as err:
            call.status = err.status
            body = {"ok": False, "error_code": err.status, "description": err.description}
            if err.parameters:
                body["parameters"] = err.parameters
        await self._record(call)
        return web.json_response(body, status=call.status)

    def _pace(self, method: str, chat_id: Any, now: float) -> None:
        """Telegram's flood control: a message beyond a limit is refused with retry_after."""
        limits = self.limits
        if limits is None or not isinstance(chat_id, int):
            return
        rules = [(chat_id, 1, limits.chat_interval, "1 message per second per chat"),
                 (None, limits.bot_count, limits.bot_span, "30 messages per second per bot")]
        if chat_id < 0:
            rules.append((chat_id, limits.group_count, limits.group_span, "20 messages per minute per group"))
        for key, count, span, rule in rules:
            recent = [t for t in self._sent.get(key, ()) if t > now - span]
            if len(recent) >= count:
                self.violations.append(Violation(method, chat_id, rule, now))
                raise ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        for key in {chat_id, None}:
            times = self._sent.setdefault(key, deque(maxlen=max(limits.bot_count, limits.group_count)))
            times.append(now)

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    @staticmethod
    async def _params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes], str]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        content_type = request.content_type if request.can_read_body else ""
        if content_type == "application/json":
            params.update(await request.json())
        elif content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if part.filename:
                    files[part.name] = await part.read()
                else:
                    params[part.name] = await part.text()
        elif request.can_read_body:
            params.update(await request.post())
        for key in JSON_FIELDS:
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        for key in INT_FIELDS:
            if isinstance(params.get(key), str):
                params[key] = int(params[key])
        return params, files, content_type

    # --- Bot API methods -----------------------------------------------------------
    async def _m_getme(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    async def _m_deletewebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        if params.get("drop_pending_updates") in (True, "true", "True"):
            self._updates.clear()
        return True

    async def _m_setmycommands(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        commands = params.get("commands") or []
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: too many commands")
        for cmd in commands:
            name, desc = cmd.get("command", ""), cmd.get("description", "")
            if not (1 <= len(name) <= 32 and name.replace("_", "").isalnum() and name.lower() == name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(desc) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = scope_key(params.get("scope") or {"type": "default"})
        self.menus[key] = commands
        if key == ("default",):
            self.commands = commands
        return True

    def menu(self, chat_id: int, user_id: int | None = None) -> list[str]:
        """The command names a user sees in a chat's menu, by Telegram's resolution order (the first scope
        with a list wins; no language codes; chat administrators are not modelled). Private chat ids are
        positive (the user's id), groups negative."""
        if chat_id > 0:
            order = [("chat", chat_id), ("all_private_chats",)]
        else:
            order = [("chat_member", chat_id, user_id), ("chat", chat_id), ("all_group_chats",)]
        found = next((self.menus[k] for k in [*order, ("default",)] if k in self.menus), [])
        return [c["command"] for c in found]

    async def _m_getupdates(self, params: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed ones drop
        timeout = float(params.get("timeout") or 0)
        if not self._updates and timeout > 0 and not self._closing:
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), timeout)
            except TimeoutError:
                pass
        return self._updates[: int(params.get("limit") or 100)]

    async def _m_sendmessage(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        text = _text(params, too_long="Bad Request: message is too long")
        return self._store_message(params, {"text": text})

    async def _m_sendphoto(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        photo = files.get("photo")
        if not photo or not photo.startswith(b"\x89PNG"):
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        caption = str(params.get("caption", ""))
        if len(caption) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        photo_size = {"file_id": f"photo{len(self.calls)}", "file_unique_id": f"u{len(self.calls)}",
                      "width": 800, "height": 400, "file_size": len(photo)}
        return self._store_message(params, {"photo": [photo_size], "caption": caption})

    def _store_message(self, params: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            raise ApiError(400, "Bad Request: chat not found")
        self._check_markup(params.get("reply_markup"))
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "chat": chat_of(chat_id), "from": self.bot_user, **content}
        _set_markup(message, params)
        self.messages[(chat_id, message["message_id"])] = message
        return message

    async def _m_editmessagetext(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        message = self._message_to_edit(params)
        text = _text(params, too_long="Bad Request: MESSAGE_TOO_LONG")
        self._check_markup(params.get("reply_markup"))
        if text == message.get("text") and params.get("reply_markup") == message.get("reply_markup"):
            raise ApiError(400, NOT_MODIFIED)
        message.update(text=text, edit_date=int(time.time()))
        _set_markup(message, params)
        return message

    async def _m_editmessagereplymarkup(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        message = self._message_to_edit(params)
        self._check_markup(params.get("reply_markup"))
        if params.get("reply_markup") == message.get("reply_markup"):
            raise ApiError(400, NOT_MODIFIED)
        _set_markup(message, params)
        message["edit_date"] = int(time.time())
        return message

    def _message_to_edit(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get((params.get("chat_id"), params.get("message_id")))  # type: ignore[arg-type]
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

    async def _m_answercallbackquery(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if not query_id or query_id in self.callback_answers:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text", ""))) > MAX_ANSWER_TEXT:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = params
        return True

    @staticmethod
    def _check_markup(markup: Any) -> None:
        if not markup:
            return
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                if not button.get("text"):
                    raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
