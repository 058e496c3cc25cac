"""URL credentials are redacted in text and in log records, whatever logger carries them."""

from __future__ import annotations

import logging
import sys

import pytest

from tasks.core.redact import (
    RedactingFilter,
    install_redaction,
    redact,
    redact_url,
)
from tasks.data.sources import mask_secret_in_logs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@mlflow.example.com", "https://user:***@mlflow.example.com"),
        (
            "https://user:p%40ss@mlflow.example.com:5000/api/2.0?x=1",
            "https://user:***@mlflow.example.com:5000/api/2.0?x=1",
        ),
        ("https://ghp_TOKEN@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
        (
            "https://storage.googleapis.com/b/o.zip?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=sa%40p.iam.gserviceaccount.com%2F20260101%2Fauto"
            "&X-Goog-Date=20260101T000000Z&X-Goog-Expires=900&X-Goog-Signature=abc123",
            "https://storage.googleapis.com/b/o.zip?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=***&X-Goog-Date=20260101T000000Z&X-Goog-Expires=900"
            "&X-Goog-Signature=***",
        ),
        (
            "https://b.s3.amazonaws.com/k.zip?X-Amz-Security-Token=T&X-Amz-Signature=S&v=2",
            "https://b.s3.amazonaws.com/k.zip?X-Amz-Security-Token=***&X-Amz-Signature=***&v=2",
        ),
        (
            "https://acct.blob.core.windows.net/c/d.zip?sv=2022-11-02&sp=r&sig=AbC%2Bd%3D",
            "https://acct.blob.core.windows.net/c/d.zip?sv=2022-11-02&sp=r&sig=***",
        ),
        ("https://h/d.zip?token=t0k&page=2", "https://h/d.zip?token=***&page=2"),
        ("https://h/d?api_key=k1;key=k2", "https://h/d?api_key=***;key=***"),
        ("https://h/d?apiKey=k&access_token=a", "https://h/d?apiKey=***&access_token=***"),
        ("https://h/d?X%2DGoog%2DSignature=s", "https://h/d?X%2DGoog%2DSignature=***"),
        ("https://h?sig=s", "https://h?sig=***"),
        ("https://h/cb#access_token=a&state=x", "https://h/cb#access_token=***&state=x"),
        ("gs://bucket/asl.zip?X-Goog-Signature=s", "gs://bucket/asl.zip?X-Goog-Signature=***"),
        ("s3://u:secret@bucket/k?token=t", "s3://u:***@bucket/k?token=***"),
    ],
)
def test_redact_url_masks_credentials_and_keeps_the_rest(url: str, expected: str):
    assert redact_url(url) == expected
    assert redact(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://mlflow.example.com:5000/#/experiments/1",
        "http://127.0.0.1:5000",
        "sqlite:////home/me/.fingerspell/mlflow.db",
        "file:///tmp/asl.zip",
        "gs://bucket/datasets/asl.zip?generation=17&alt=media",
        "https://h/d?token=&x",  # empty values hide nothing
        "models:/asl-detector/3",
        "roboflow:ws/project/1",
    ],
)
def test_urls_without_secrets_are_unchanged(url: str):
    assert redact(url) == url


def test_user_without_password_is_masked_whole():
    # A lone user part is often a token (GitHub, Sentry): hidden; with a password it stays.
    assert redact("https://only-user@host/x") == "https://***@host/x"
    assert redact("https://alice:@host/x") == "https://alice:@host/x"


def test_every_url_in_free_text_is_redacted():
    text = (
        "MLflow at https://bob:hunter2@mlflow.example.com does not answer; dataset "
        "'gs://b/asl.zip?X-Goog-Signature=SIG1&X-Goog-Date=d' (see https://h/x?sig=SIG2). "
        "Plain http://127.0.0.1:5000/health stays, and so does this sentence."
    )
    out = redact(text)
    for secret in ("hunter2", "SIG1", "SIG2"):
        assert secret not in out
    assert "https://bob:***@mlflow.example.com does not answer" in out
    assert "'gs://b/asl.zip?X-Goog-Signature=***&X-Goog-Date=d'" in out
    assert "(see https://h/x?sig=***). " in out
    assert "Plain http://127.0.0.1:5000/health stays, and so does this sentence." in out


def test_text_without_urls_is_the_same_object():
    text = "token=abc is not a URL; nothing to do"
    assert redact(text) is text


def _record(name: str, msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    # Built directly, not through a logger, so only the filter under test can redact it.
    exc_info = None
    if exc:
        try:
            raise RuntimeError("fetching https://h/o.zip?X-Goog-Signature=TRACESIG failed")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, exc_info)


def test_filter_redacts_message_args_and_traceback():
    record = _record("x", "fetched %s", "https://u:PW@h/o?sig=SIG", exc=True)
    assert RedactingFilter().filter(record) is True
    formatted = logging.Formatter().format(record)
    assert "PW" not in formatted and "SIG" not in formatted and "TRACESIG" not in formatted
    assert "fetched https://u:***@h/o?sig=***" in formatted
    assert "X-Goog-Signature=***" in formatted


def test_filter_keeps_clean_records_untouched():
    record = _record("x", "%d images from %s", 3, "http://127.0.0.1:8000/asl.zip")
    RedactingFilter().filter(record)
    assert record.msg == "%d images from %s" and record.args == (3, "http://127.0.0.1:8000/asl.zip")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def collecting_parent():
    parent = logging.getLogger("fingerspell_test_redact")
    handler = _Collect()
    parent.addHandler(handler)
    parent.setLevel(logging.INFO)
    yield parent, handler
    parent.removeHandler(handler)


def test_installed_filter_sits_on_handlers_and_sees_child_records(collecting_parent):
    parent, handler = collecting_parent
    install_redaction()
    install_redaction()  # idempotent: one filter per handler, one factory wrapper
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    assert any(isinstance(f, RedactingFilter) for h in logging.getLogger().handlers
               for f in h.filters) or not logging.getLogger().handlers  # fmt: skip
    factory = logging.getLogRecordFactory()
    install_redaction()
    assert logging.getLogRecordFactory() is factory

    # A record of a child logger never meets the parent's logger filters, but the handler's.
    parent.getChild("child").info("tracking at %s", "https://ann:CHILDPW@mlflow.example.com")
    # The handler filter alone (record factory bypassed) redacts too.
    handler.handle(_record("fingerspell_test_redact.child", "x https://h/?token=DIRECT"))
    assert handler.lines == [
        "tracking at https://ann:***@mlflow.example.com",
        "x https://h/?token=***",
    ]


def test_handlers_added_after_installation_get_redacted_records(collecting_parent):
    install_redaction()
    late = _Collect()  # e.g. a handler from a later logging reconfiguration
    logger = logging.getLogger("fingerspell_test_redact.late")
    logger.addHandler(late)
    try:
        logger.info("source %s", "gs://b/o.zip?X-Goog-Signature=LATESIG")
    finally:
        logger.removeHandler(late)
    assert late.lines == ["source gs://b/o.zip?X-Goog-Signature=***"]


def test_composes_with_the_roboflow_key_mask(collecting_parent):
    _, handler = collecting_parent
    install_redaction()
    logger = logging.getLogger("fingerspell_test_redact.urllib3")
    with mask_secret_in_logs("RFKEY"):
        # The Roboflow mask sits on urllib3's loggers; ours must not undo or break it.
        urllib3 = logging.getLogger("urllib3.connectionpool")
        urllib3.addHandler(handler)
        urllib3.setLevel(logging.INFO)
        try:
            urllib3.info('"GET /ws/RFKEY/x?api_key=RFKEY HTTP/1.1" https://h/o?sig=S1')
        finally:
            urllib3.removeHandler(handler)
            urllib3.setLevel(logging.NOTSET)
    logger.info("unrelated")
    # Other threads may log through urllib3 meanwhile, and once MLflow is imported its own
    # SensitiveQueryParamFilter on urllib3 rewrites masked values again: look for our line.
    ours = [line for line in handler.lines if line.startswith('"GET /ws/***/x?api_key=***')]
    assert len(ours) == 1 and "https://h/o?sig=" in ours[0]
    assert not [line for line in handler.lines if "RFKEY" in line or "sig=S1" in line]


def test_prefect_api_log_handler_gets_the_filter():
    import prefect  # noqa: F401  (sets up Prefect's logging)
    from prefect.logging.handlers import APILogHandler

    install_redaction()
    api_handlers = [
        handler
        for name in ("prefect.flow_runs", "prefect.task_runs")
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, APILogHandler)
    ]
    assert api_handlers, "Prefect's run loggers have no API handler"
    for handler in api_handlers:
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
