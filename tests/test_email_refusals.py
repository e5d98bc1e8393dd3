"""A buyer's address the mail server refuses (``orders.models.EmailRefusal``).

Against a real SMTP conversation: a small server on a local port answers RCPT TO with the reply
each test sets (550 "user unknown", 452 "mailbox full"), and Django's SMTP backend and smtplib
parse it as they would a provider's. A permanent refusal (5xx) is offered to the mail server once
and never again; a temporary one (4xx) is tried again later, not on every run: before, a
mistyped address was offered every 2 s for a minute and then every minute for a day.
"""

import socketserver
import threading
from datetime import timedelta
from smtplib import SMTPRecipientsRefused

import pytest
from django.utils import timezone

from orders.models import EmailRefusal, Order
from orders.services import orders
from orders.tasks import send_delivery_emails, sweep_delivery_emails
from tests.test_delivery_emails import deliver_quietly, notified


class _Conversation(socketserver.StreamRequestHandler):
    def handle(self):
        server = self.server

        def say(line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        say("220 mail.test ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode().strip()
            verb = command.upper()
            if verb.startswith(("EHLO", "HELO")):
                say("250-mail.test")
                say("250 8BITMIME")
            elif verb.startswith("RCPT TO"):
                address = command[command.index("<") + 1 : command.index(">")]
                server.offered.append(address)
                say(server.replies.get(address, "250 2.1.5 OK"))
            elif verb == "DATA":
                say("354 go ahead")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                server.accepted += 1
                say("250 2.0.0 queued")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:  # MAIL FROM, RSET, NOOP
                say("250 OK")


class MailServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Conversation)
        self.replies: dict[str, str] = {}
        self.offered: list[str] = []
        self.accepted = 0


@pytest.fixture
def smtp(settings):
    server = MailServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.server_address
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    yield server
    server.shutdown()
    server.server_close()


def test_an_unknown_address_is_offered_to_the_mail_server_once(db, django_capture_on_commit_callbacks, smtp, settings):
    settings.DELIVERY_EMAIL_SWEEP_GRACE_SECONDS = 60
    batch = deliver_quietly(django_capture_on_commit_callbacks, 3)
    bad = batch[0].buyer.email
    smtp.replies[bad] = f"550 5.1.1 <{bad}>: Recipient address rejected: User unknown"

    assert orders.delivery_emails_send() == 2
    assert smtp.accepted == 2 and smtp.offered.count(bad) == 1
    # Given up: the email stays claimed, so no run and no sweep offers it again.
    assert notified(batch) == {o.pk for o in batch}
    refusal = EmailRefusal.objects.get(order=batch[0])
    assert (refusal.address, refusal.code, refusal.permanent, refusal.attempts, refusal.retry_at) == (
        bad,
        550,
        True,
        1,
        None,
    )
    assert "User unknown" in refusal.reply
    Order.objects.filter(pk=batch[0].pk).update(delivered_at=timezone.now() - timedelta(minutes=5))
    assert send_delivery_emails() == sweep_delivery_emails() == 0
    assert smtp.offered.count(bad) == 1


def test_a_full_mailbox_is_tried_again_later_not_on_every_run(db, django_capture_on_commit_callbacks, smtp):
    [order] = deliver_quietly(django_capture_on_commit_callbacks, 1)
    address = order.buyer.email
    smtp.replies[address] = "452 4.2.2 Mailbox full"

    before = timezone.now()
    assert orders.delivery_emails_send() == 0
    refusal = EmailRefusal.objects.get(order=order)
    assert (refusal.code, refusal.permanent, refusal.attempts) == (452, False, 1)
    assert before + timedelta(seconds=59) < refusal.retry_at <= timezone.now() + timedelta(seconds=60)
    assert notified([order]) == set()  # still due ...
    for _ in range(3):
        assert orders.delivery_emails_send() == 0  # ... but not before its next attempt
    assert smtp.offered.count(address) == 1

    EmailRefusal.objects.filter(pk=refusal.pk).update(retry_at=timezone.now() - timedelta(seconds=1))
    assert orders.delivery_emails_send() == 0  # refused again: the wait doubles
    refusal.refresh_from_db()
    assert refusal.attempts == 2 and refusal.retry_at > timezone.now() + timedelta(seconds=110)
    assert smtp.offered.count(address) == 2

    del smtp.replies[address]  # the buyer made room
    EmailRefusal.objects.filter(pk=refusal.pk).update(retry_at=timezone.now() - timedelta(seconds=1))
    assert orders.delivery_emails_send() == 1
    assert smtp.accepted == 1 and notified([order]) == {order.pk}


def test_the_wait_between_attempts_doubles_up_to_an_hour(db, django_capture_on_commit_callbacks):
    [order] = deliver_quietly(django_capture_on_commit_callbacks, 1)
    refused = SMTPRecipientsRefused({order.buyer.email: (451, b"4.7.1 Greylisted, try again later")})
    now = timezone.now()
    waits = []
    for _ in range(9):
        assert orders.email_refusal_record(order=order, refused=refused, now=now) is False
        waits.append(EmailRefusal.objects.get(order=order).retry_at - now)
    assert [w.total_seconds() / 60 for w in waits] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


@pytest.mark.parametrize(
    ("replies", "permanent"),
    [
        ([(550, b"5.1.1 <a@example.com>: Recipient address rejected: User unknown")], True),
        ([(550, b"5.1.10 Null MX")], True),
        ([(553, b"5.1.3 Bad recipient address syntax"), (550, b"5.2.1 Mailbox disabled")], True),
        # Not the address's fault: the sender's (relay, policy, blocklist) or the server's.
        ([(550, b"5.7.1 Relaying denied")], False),
        ([(554, b"5.7.1 Service unavailable; client host blocked")], False),
        ([(552, b"5.2.2 Mailbox full")], False),
        ([(550, b"Requested action not taken: mailbox unavailable")], False),  # no enhanced code
        ([(550, b"5.11.1 no such code")], False),
        # Temporary, and one of several recipients passing.
        ([(452, b"4.2.2 Mailbox full")], False),
        ([(451, b"4.7.1 Greylisted")], False),
        ([(550, b"5.1.1 User unknown"), (451, b"4.3.0 Try later")], False),
    ],
)
def test_only_a_refusal_that_blames_every_address_is_for_good(replies, permanent):
    refused = SMTPRecipientsRefused({f"r{i}@example.com": reply for i, reply in enumerate(replies)})
    assert orders.email_refusal_permanent(refused) is permanent


def test_a_relay_refusing_every_recipient_drops_no_email(db, django_capture_on_commit_callbacks, smtp):
    """A misconfigured relay (wrong EMAIL_HOST_USER) refuses every RCPT with 550 5.7.1: the emails
    wait for retries, none is given up, and they go out once the relay is fixed."""
    batch = deliver_quietly(django_capture_on_commit_callbacks, 3)
    for order in batch:
        smtp.replies[order.buyer.email] = "550 5.7.1 Relaying denied"
    assert orders.delivery_emails_send() == 0
    assert notified(batch) == set()
    assert set(EmailRefusal.objects.values_list("permanent", flat=True)) == {False}
    smtp.replies.clear()
    EmailRefusal.objects.update(retry_at=timezone.now() - timedelta(seconds=1))
    assert orders.delivery_emails_send() == 3 and smtp.accepted == 3


def test_a_single_email_refused_for_good_is_not_retried_and_not_sent_again(
    db, django_capture_on_commit_callbacks, smtp
):
    """``order_notify`` (one email, a task with its own retries): a 4xx is raised for the task's
    retry with the claim undone; a 5xx keeps the claim and ends it, and a later email of the same
    order to the same address is not offered at all."""
    [order] = deliver_quietly(django_capture_on_commit_callbacks, 1)
    address = order.buyer.email

    smtp.replies[address] = "451 4.3.0 Try again later"
    with pytest.raises(SMTPRecipientsRefused):
        orders.order_notify(order_id=order.pk, kind="delivered")
    assert notified([order]) == set() and not EmailRefusal.objects.exists()

    smtp.replies[address] = "550 5.1.1 No such user"
    assert orders.order_notify(order_id=order.pk, kind="delivered") is False
    assert notified([order]) == {order.pk}
    assert EmailRefusal.objects.get(order=order).permanent
    assert smtp.offered.count(address) == 2

    Order.objects.filter(pk=order.pk).update(buyer_notified_at=None)  # another email of the order is due
    assert orders.order_notify(order_id=order.pk, kind="delivered") is False
    assert smtp.offered.count(address) == 2 and smtp.accepted == 0


def test_emails_held_by_a_refusal_are_counted_for_metrics(db, django_capture_on_commit_callbacks, smtp, settings):
    """``kamarket_emails_held_by_refusal`` (alert EmailsHeldByRefusals): emails still due that a
    refusal holds back; not those given up, not those sent since."""
    from django.test import Client

    settings.METRICS_TOKEN = "t0ken"

    def held() -> float:
        body = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").content.decode()
        return float(next(line.split()[1] for line in body.splitlines() if line.startswith("kamarket_emails_held_by")))

    unknown, full, relay = deliver_quietly(django_capture_on_commit_callbacks, 3)
    smtp.replies[unknown.buyer.email] = "550 5.1.1 User unknown"
    smtp.replies[full.buyer.email] = "452 4.2.2 Mailbox full"
    smtp.replies[relay.buyer.email] = "550 5.7.1 Relaying denied"
    assert held() == 0
    assert orders.delivery_emails_send() == 0
    assert held() == 2  # the full mailbox and the relay's refusal; the unknown user is given up
    smtp.replies.clear()
    EmailRefusal.objects.update(retry_at=timezone.now() - timedelta(seconds=1))
    assert orders.delivery_emails_send() == 2
    assert held() == 0
