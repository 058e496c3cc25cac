"""Keep credentials that ride inside URLs out of logs, MLflow and the app.

A tracking URI may carry a password (``https://user:pass@mlflow.example.com``) and a dataset URL
may be signed (``...?X-Goog-Signature=...``, ``?sig=``, ``?token=``). Those strings travel far:
log records, MLflow params and tags, Prefect artifacts, error messages on a web page. Here they
are rewritten so the secret parts read ``***`` while scheme, host and path stay readable, so a
user can still tell which server or object was meant.

:func:`install_redaction` puts a :class:`RedactingFilter` in front of every log handler, so that a
record is redacted whatever logger it was sent through.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any
from urllib.parse import unquote

MASK = "***"

# Any scheme://... run of characters that cannot end a URL in prose or in a repr.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# Punctuation that more likely ends the sentence than the URL ("see http://x/a?sig=1.").
_TRAILING = ".,;:!?)]}"
# Query/fragment parameter names that hold secrets: signatures (X-Goog-Signature, X-Amz-Signature,
# sig), tokens (token, access_token, X-Amz-Security-Token), keys (key, api_key, AWSAccessKeyId),
# credentials (X-Goog-Credential names the signing account), passwords and session ids.
# Matching substrings over-redacts a harmless name now and then, which is the safe mistake.
_SECRET_NAME = re.compile(
    r"sig|token|key|secret|pass|pwd|credential|auth|session|jwt|bearer", re.IGNORECASE
)


def _is_secret_name(name: str) -> bool:
    # Names may be percent-encoded (X%2DGoog%2DSignature) or use - and _ interchangeably.
    return bool(_SECRET_NAME.search(unquote(name).replace("-", "").replace("_", "")))


def _redact_params(text: str) -> str:
    """Mask the values of secret-looking ``name=value`` pairs of a query or fragment."""
    parts = re.split(r"([&;])", text)  # keep the separators so the string stays as it was
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        if eq and value and _is_secret_name(name):
            parts[i] = f"{name}={MASK}"
    return "".join(parts)


def _redact_netloc(netloc: str) -> str:
    """Mask the password of ``user:password@host``; a lone ``token@host`` is masked whole.

    The user name stays when a password follows it: it tells which account is meant and is no
    secret by itself. Without a password the user part often *is* the secret (GitHub's
    ``https://<token>@github.com``, ``https://<api key>@sentry.io``), so it is masked.
    """
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, password = userinfo.partition(":")
    if colon and user:
        return f"{user}:{MASK}@{host}" if password else netloc
    return f"{MASK}@{host}"


def redact_url(text: str) -> str:
    """Redact the credentials of one URL: its password and secret query parameters.

    Args:
        text: A URL such as ``https://user:pass@host/path?X-Goog-Signature=abc&alt=media``.

    Returns:
        The same URL with the password and the values of secret-looking query and fragment
        parameters replaced by ``***`` (``https://user:***@host/path?X-Goog-Signature=***&alt=media``);
        a URL without credentials is returned unchanged.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    # Split by hand rather than urlsplit/urlunsplit, which would normalize what the user wrote.
    rest, hash_, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    netloc = _redact_netloc(netloc)
    query = _redact_params(query) if question else query
    fragment = _redact_params(fragment) if hash_ else fragment
    return f"{scheme}{sep}{netloc}{slash}{path}{question}{query}{hash_}{fragment}"


def _redact_match(match: re.Match[str]) -> str:
    url = match.group(0)
    stripped = url.rstrip(_TRAILING)
    return redact_url(stripped) + url[len(stripped) :]


def redact(text: str) -> str:
    """Redact every URL found in free text (log lines, error messages, summaries).

    Args:
        text: Any text; non-URL parts are left alone.

    Returns:
        ``text`` with each URL passed through :func:`redact_url`.
    """
    if "://" not in text:  # the common case, and log records are many: skip the regex
        return text
    return _URL.sub(_redact_match, text)


def redact_value(value: Any) -> Any:
    """:func:`redact` for strings; other values are returned as they are."""
    return redact(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """A filter that redacts URLs in a record's message and traceback; it drops nothing.

    Put it on handlers, not loggers: a logger's filters see only records logged to that very
    logger, never those propagated up from its children, while a handler's filters see every
    record the handler writes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place when it holds a secret; always keep it."""
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Redact a record's formatted message, traceback and stack text in place."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: let the handler report it as usual
        return
    clean = redact(message)
    if clean != message:
        # The formatted text replaces msg and args, so no formatter can re-insert the secret.
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when it is set, so a redacted traceback put there is the
        # one every formatter prints (set only when needed: formatting tracebacks is costly).
        text = logging.Formatter().formatException(record.exc_info)
        if redact(text) != text:
            record.exc_text = text
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


_FILTER = RedactingFilter()


def _redacting_factory(factory: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        redact_record(record)
        return record

    make._fingerspell_redacts = True  # type: ignore[attr-defined]
    return make


def _all_handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger)
    ]
    return [handler for logger in loggers for handler in list(logger.handlers)]


def install_redaction() -> None:
    """Redact URLs in every log record, whatever logger or handler it goes through.

    Safe to call again and again (each call only adds what is missing), and worth calling after
    logging was reconfigured: it attaches one :class:`RedactingFilter` to each handler of the
    root logger and of every existing logger, Prefect's API log handler
    (``prefect.logging.handlers.APILogHandler`` on ``prefect.flow_runs``/``task_runs``, whose
    records become the run logs in Prefect's database) included. If Prefect is imported, its
    logging is set up first so that its handlers exist to be filtered.

    Handlers created later (a reconfiguration, pytest's capture) lack the filter, so the log
    record factory redacts each record's message as it is made too.
    """
    if "prefect" in sys.modules:  # never import Prefect just for this (the app runs without)
        from prefect.logging.configuration import ensure_logging_setup

        ensure_logging_setup()
    for handler in _all_handlers():
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_fingerspell_redacts", False):
        logging.setLogRecordFactory(_redacting_factory(factory))
