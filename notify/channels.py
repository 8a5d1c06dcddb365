"""Where messages go: SMTP e-mail, a signed webhook, the Telegram Bot API.

``send(message, payload, delivery_id)`` returns nothing or raises
:class:`DeliveryError` saying what failed and whether trying again can help
(``retryable``; ``retry_after_s`` when the far end said how long to wait).  A
bot token never appears in an error: it is part of the Telegram URL.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from .messages import Message
from .rules import EmailChannel, TelegramChannel, WebhookChannel
from .signing import sign

TELEGRAM_MAX_CHARS = 4096


class DeliveryError(RuntimeError):
    def __init__(self, message: str, retryable: bool = True, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _http_error(what: str, resp: httpx.Response) -> DeliveryError:
    # 4xx means our request is wrong (URL, token, chat, signature): retrying will not help, except 408/429.
    retryable = resp.status_code >= 500 or resp.status_code in (408, 429)
    return DeliveryError(f"{what} answered HTTP {resp.status_code}: {resp.text[:200]}", retryable, _retry_after(resp))


class EmailSender:
    def __init__(self, name: str, cfg: EmailChannel, password: str = ""):
        self.name, self.cfg, self.password = name, cfg, password

    def send(self, message: Message, payload: dict, delivery_id: str) -> None:
        cfg = self.cfg
        msg = EmailMessage()
        msg["Subject"] = message.subject
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.to)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(idstring=delivery_id[:16], domain="fansipan")
        msg.set_content(message.text)
        where = f"SMTP server {cfg.host}:{cfg.port} (channel {self.name})"
        try:
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username:
                    smtp.login(cfg.username, self.password)
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"{where} refused the login of {cfg.username!r} ({exc.smtp_code}): check the password "
                                f"variable {cfg.password_env}", retryable=False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"{where} refused the recipients {sorted(exc.recipients)}", retryable=False) from None
        except smtplib.SMTPResponseException as exc:
            # 4xx: try later (greylisting, a full queue); 5xx: permanent.
            raise DeliveryError(f"{where} answered {exc.smtp_code} {exc.smtp_error!r}",
                                retryable=400 <= exc.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"cannot deliver through {where}: {exc}") from None


class WebhookSender:
    def __init__(self, name: str, cfg: WebhookChannel, secret: str, client: httpx.Client | None = None):
        self.name, self.cfg, self.secret = name, cfg, secret
        self.client = client or httpx.Client(timeout=cfg.timeout_s, trust_env=False)

    def send(self, message: Message, payload: dict, delivery_id: str) -> None:
        body = json.dumps({**payload, "subject": message.subject, "text": message.text},
                          ensure_ascii=False, separators=(",", ":")).encode()
        ts = int(time.time())
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "fansipan-notify",
                   "X-Fansipan-Timestamp": str(ts), "X-Fansipan-Signature": sign(self.secret, ts, body),
                   "X-Fansipan-Delivery": delivery_id}
        what = f"webhook {self.cfg.url} (channel {self.name})"
        try:
            resp = self.client.post(self.cfg.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"cannot reach {what}: {type(exc).__name__}: {exc}") from None
        if not resp.is_success:
            raise _http_error(what, resp)


class TelegramSender:
    def __init__(self, name: str, cfg: TelegramChannel, token: str, client: httpx.Client | None = None):
        self.name, self.cfg, self.token = name, cfg, token
        self.client = client or httpx.Client(timeout=cfg.timeout_s, trust_env=False)

    def send(self, message: Message, payload: dict, delivery_id: str) -> None:
        text = message.text if len(message.text) <= TELEGRAM_MAX_CHARS else message.text[:TELEGRAM_MAX_CHARS - 1] + "…"
        what = f"Telegram Bot API at {self.cfg.api_url} (channel {self.name}, chat {self.cfg.chat_id})"
        try:
            resp = self.client.post(f"{self.cfg.api_url}/bot{self.token}/sendMessage",
                                    json={"chat_id": self.cfg.chat_id, "text": text, "disable_web_page_preview": True})
        except httpx.HTTPError as exc:
            raise DeliveryError(f"cannot reach {what}: {type(exc).__name__}".replace(self.token, "<token>")) from None
        try:
            doc = resp.json()
        except ValueError:
            doc = {}
        if resp.is_success and doc.get("ok") is True:
            return
        desc = str(doc.get("description") or resp.text[:200]).replace(self.token, "<token>")
        retry_after = (doc.get("parameters") or {}).get("retry_after")
        retryable = resp.status_code >= 500 or resp.status_code == 429
        hint = " (check the bot token variable and that the bot is in the chat)" if resp.status_code in (401, 403, 404) else ""
        raise DeliveryError(f"{what} answered HTTP {resp.status_code}: {desc}{hint}", retryable,
                            float(retry_after) if isinstance(retry_after, (int, float)) else None)


def make_sender(name: str, cfg, secret: str = ""):
    if cfg.type == "email":
        return EmailSender(name, cfg, secret)
    if cfg.type == "webhook":
        return WebhookSender(name, cfg, secret)
    return TelegramSender(name, cfg, secret)
