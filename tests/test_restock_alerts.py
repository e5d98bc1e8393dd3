"""Restock alerts (issue 15): subscribing (members at once, guests by a confirmation link),
the alerts sent when stock is imported (in batches, each subscriber exactly once, also when a
sending run is killed mid-way and run again), the unsubscribe link, the form's limits."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from catalog import selectors
from catalog import services as catalog_services
from catalog.models import RestockSubscription
from catalog.tasks import restock_alerts_sweep
from tests.builders import chain_of
from tests.factories import ProductFactory, UserFactory, add_stock, storefront_create

pytestmark = [pytest.mark.usefixtures("english"), pytest.mark.django_db]


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside the send loop: nothing after it runs, no handler
    catches it (not an Exception, so no retry logic sees it either)."""


@pytest.fixture
def product(db):
    return ProductFactory(name="Steam ¥100", price=Decimal("97.00"))  # no stock: sold out


def subscribe_url(product):
    return reverse("catalog:restock_subscribe", args=[product.slug])


def confirmed(product, n: int, *, prefix="fan") -> list[RestockSubscription]:
    """``n`` members subscribed (confirmed at once) through the service."""
    subs = []
    for i in range(n):
        user = UserFactory(email=f"{prefix}{i}@example.com")
        sub, outcome = catalog_services.restock_subscribe(product=product, user=user)
        assert outcome == "subscribed"
        subs.append(sub)
    return subs


def alerts(product) -> list[str]:
    """The recipients of the restock alerts sent so far for ``product``."""
    return [m.to[0] for m in mail.outbox if m.subject == f"Back in stock: {product.name}"]


def restock(product, count=3, *, capture):
    with capture(execute=True):
        add_stock(product, count)


# --- subscribing --------------------------------------------------------------------------------


def test_a_member_subscribes_with_one_click(client, product):
    member = UserFactory(email="Member@Example.com")
    client.force_login(member)
    page = client.get(product.get_absolute_url()).content.decode()
    assert "Notify me when it is back" in page and 'data-testid="restock-email"' not in page

    response = client.post(subscribe_url(product))

    assert response.status_code == 302 and response["Location"].endswith(product.get_absolute_url() + "#restock")
    sub = RestockSubscription.objects.get()
    assert sub.user == member and sub.email == "member@example.com" and sub.confirmed_at is not None
    assert len(sub.token) >= 40 and sub.page_path == product.get_absolute_url()
    assert mail.outbox == []  # a member needs no confirmation
    page = client.get(product.get_absolute_url()).content.decode()
    assert 'data-testid="restock-subscribed"' in page and "Notify me when it is back" not in page
    # Asking again changes nothing.
    client.post(subscribe_url(product))
    assert RestockSubscription.objects.count() == 1


def test_a_guest_confirms_by_the_emailed_link_and_the_get_writes_nothing(
    client, product, django_capture_on_commit_callbacks
):
    page = client.get(product.get_absolute_url()).content.decode()
    assert 'data-testid="restock-email"' in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(subscribe_url(product), {"email": "  Guest@Example.COM "})

    assert response.status_code == 302
    sub = RestockSubscription.objects.get()
    assert sub.email == "guest@example.com" and sub.user is None and sub.confirmed_at is None
    assert sub.ip == "127.0.0.1"
    (message,) = mail.outbox
    assert message.to == ["guest@example.com"]
    assert message.alternatives and message.alternatives[0][1] == "text/html"
    link = re.search(r"http://\S+/restock/confirm/\S+/", message.body).group(0)
    path = link.split("://", 1)[1].split("/", 1)[1]
    writes = []
    with connection.execute_wrapper(lambda ex, sql, *a: writes.append(sql) or ex(sql, *a)):
        page = client.get("/" + path)
    assert page.status_code == 200 and 'data-testid="restock-confirm"' in page.content.decode()
    assert not [w for w in writes if re.match(r"\s*(INSERT|UPDATE|DELETE)", w, re.I)]
    sub.refresh_from_db()
    assert sub.confirmed_at is None

    client.post("/" + path)
    sub.refresh_from_db()
    assert sub.confirmed_at is not None
    # A forged or altered link confirms nothing.
    assert client.get("/restock/confirm/" + sub.token + ":bad/").status_code == 404


def test_the_confirmation_link_expires(client, product, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        sub, _outcome = catalog_services.restock_subscribe(product=product, email="late@example.com")
    url = reverse("catalog:restock_confirm", args=[catalog_services.restock_confirm_token(sub)])
    settings.RESTOCK_CONFIRM_DAYS = 1
    signed_long_ago = timezone.now() - timedelta(days=2)
    from unittest import mock

    with mock.patch("time.time", return_value=signed_long_ago.timestamp()):
        url = reverse("catalog:restock_confirm", args=[catalog_services.restock_confirm_token(sub)])
    assert client.post(url).status_code == 404
    sub.refresh_from_db()
    assert sub.confirmed_at is None


def test_refusals_in_stock_bad_and_disposable_addresses(client, product):
    response = client.post(subscribe_url(product), {"email": "not-an-address"}, follow=True)
    assert "Enter a valid email address." in response.content.decode()
    response = client.post(subscribe_url(product), {"email": "someone@mailinator.com"}, follow=True)
    assert "disposable-mail" in response.content.decode()
    add_stock(product, 1)
    response = client.post(subscribe_url(product), {"email": "ok@example.com"}, follow=True)
    assert "This product is in stock" in response.content.decode()
    assert 'data-testid="restock"' not in response.content.decode()  # no form on a product in stock
    assert not RestockSubscription.objects.exists()


def test_the_form_is_rate_limited_per_address_and_network(client, product, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "restock": {"subject": (2, 3600), "network": (5, 3600)}}
    for _ in range(2):
        assert client.post(subscribe_url(product), {"email": "flood@example.com"}).status_code == 302
    refused = client.post(subscribe_url(product), {"email": "flood@example.com"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    for i in range(3):  # other addresses, same network: 3 more make 6 > 5
        last = client.post(subscribe_url(product), {"email": f"other{i}@example.com"})
    assert last.status_code == 429
    assert RestockSubscription.objects.count() == 3  # flood@ once (asked twice), other0, other1


def test_the_storefront_product_page_offers_the_alert(client, product, level):
    shop = storefront_create(agent=chain_of(1, level)[0], slug="star", name="星辰卡铺", default_markup_value=Decimal(5))
    page_url = reverse("storefront:product", args=[shop.slug, product.slug])
    page = client.get(page_url).content.decode()
    action = reverse("storefront:restock_subscribe", args=[shop.slug, product.slug])
    assert f'action="{action}"' in page

    member = UserFactory()
    client.force_login(member)
    response = client.post(action)
    assert response["Location"] == page_url + "#restock"
    sub = RestockSubscription.objects.get()
    assert sub.page_path == page_url and sub.confirmed_at is not None
    assert client.post(reverse("storefront:restock_subscribe", args=["no-such-shop", product.slug])).status_code == 404


# --- sending ------------------------------------------------------------------------------------


def test_importing_stock_emails_each_confirmed_subscriber_once(product, settings, django_capture_on_commit_callbacks):
    settings.RESTOCK_ALERT_BATCH = 3  # 8 subscribers: three runs (3 + 3 + 2)
    subs = confirmed(product, 8)
    with django_capture_on_commit_callbacks(execute=True):
        guest, _outcome = catalog_services.restock_subscribe(product=product, email="unconfirmed@example.com")
    other = ProductFactory()
    confirmed(other, 1, prefix="elsewhere")
    mail.outbox.clear()

    restock(product, capture=django_capture_on_commit_callbacks)

    assert sorted(alerts(product)) == sorted(s.email for s in subs)  # each once; never the unconfirmed guest
    assert not RestockSubscription.objects.filter(product=product, confirmed_at__isnull=False, notified_at=None)
    guest.refresh_from_db()
    assert guest.notified_at is None
    assert RestockSubscription.objects.get(product=other).notified_at is None  # another product's wait goes on
    notified = RestockSubscription.objects.filter(notified_at__isnull=False)
    batch_ids = set(notified.values_list("notified_batch", flat=True))
    assert len(batch_ids) == 1 and None not in batch_ids

    message = next(m for m in mail.outbox if m.to == [subs[0].email])
    unsubscribe = "http://127.0.0.1:8000" + reverse("catalog:restock_unsubscribe", args=[subs[0].token])
    assert message.extra_headers["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in message.body and unsubscribe in message.alternatives[0][0]
    assert product.get_absolute_url() in message.body

    # One alert per subscription: the next restock emails nobody (they subscribe again to hear).
    mail.outbox.clear()
    restock(product, capture=django_capture_on_commit_callbacks)
    assert alerts(product) == []


def test_a_run_killed_mid_way_and_run_again_emails_everyone_exactly_once(product, settings, monkeypatch):
    settings.RESTOCK_ALERT_BATCH = 4
    subs = confirmed(product, 10)
    add_stock(product, 2)  # no on_commit here: the runs are driven by hand below
    sent_before_kill = 2
    real_send = catalog_services.restock_email_alert

    def dying_send(sub):
        if len(alerts(product)) == sent_before_kill:
            raise WorkerKilled
        real_send(sub)

    monkeypatch.setattr(catalog_services, "restock_email_alert", dying_send)
    with pytest.raises(WorkerKilled):
        catalog_services.restock_notify_run(product_id=product.pk, run_id="task-1")
    assert len(alerts(product)) == 2
    claimed = RestockSubscription.objects.filter(claim="task-1", notified_at=None)
    assert claimed.count() == 2  # the batch's other two: claimed, not sent

    # Another run (the next batch's) does not touch rows a live run holds...
    monkeypatch.setattr(catalog_services, "restock_email_alert", real_send)
    sent, more = catalog_services.restock_notify_run(product_id=product.pk, run_id="task-2")
    assert sent == 4 and more is True
    assert claimed.count() == 2
    # ... the killed run's message comes back (acks_late: same task id) and finishes its rows.
    sent, _more = catalog_services.restock_notify_run(product_id=product.pk, run_id="task-1")
    assert sent == 4  # its own 2, then 2 more unclaimed
    assert sorted(alerts(product)) == sorted(s.email for s in subs)
    assert len(set(alerts(product))) == 10


def test_a_dead_runs_claim_is_taken_over_once_stale(product, settings, monkeypatch):
    settings.RESTOCK_ALERT_BATCH = 100
    subs = confirmed(product, 5)
    add_stock(product, 1)
    real_send = catalog_services.restock_email_alert

    def dying_send(sub):
        if len(alerts(product)) == 3:
            raise WorkerKilled
        real_send(sub)

    monkeypatch.setattr(catalog_services, "restock_email_alert", dying_send)
    with pytest.raises(WorkerKilled):
        catalog_services.restock_notify_run(product_id=product.pk, run_id="dead")
    monkeypatch.setattr(catalog_services, "restock_email_alert", real_send)

    assert restock_alerts_sweep() == 1  # queued (eager): the claim is fresh, the new run waits
    assert len(alerts(product)) == 3
    RestockSubscription.objects.filter(claim="dead").update(claimed_at=timezone.now() - timedelta(minutes=11))
    assert restock_alerts_sweep() == 1
    assert sorted(alerts(product)) == sorted(s.email for s in subs)
    assert restock_alerts_sweep() == 0 and selectors.restock_products_due() == []


def test_nothing_is_sent_for_a_product_off_sale_or_sold_out_again(product):
    subs = confirmed(product, 2)
    assert catalog_services.restock_notify_run(product_id=product.pk, run_id="r") == (0, False)  # no stock
    add_stock(product, 1)
    product.is_active = False
    product.save(update_fields=["is_active"])
    assert catalog_services.restock_notify_run(product_id=product.pk, run_id="r") == (0, False)
    assert alerts(product) == [] and all(RestockSubscription.objects.get(pk=s.pk).is_live for s in subs)


# --- unsubscribing ------------------------------------------------------------------------------


def test_the_unsubscribe_link_shows_a_button_and_only_the_post_unsubscribes(
    client, product, django_capture_on_commit_callbacks
):
    keep, leave = confirmed(product, 2)
    url = reverse("catalog:restock_unsubscribe", args=[leave.token])
    writes = []
    with connection.execute_wrapper(lambda ex, sql, *a: writes.append(sql) or ex(sql, *a)):
        page = client.get(url)
    assert page.status_code == 200 and 'data-testid="restock-unsubscribe"' in page.content.decode()
    assert not [w for w in writes if re.match(r"\s*(INSERT|UPDATE|DELETE)", w, re.I)]
    assert page["X-Robots-Tag"] == "noindex"

    # A mail app's one-click unsubscribe (RFC 8058): a POST without a CSRF token.
    from django.test import Client

    done = Client(enforce_csrf_checks=True).post(url, {"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and 'data-testid="restock-state"' in done.content.decode()
    leave.refresh_from_db()
    assert leave.unsubscribed_at is not None

    restock(product, capture=django_capture_on_commit_callbacks)
    assert alerts(product) == [keep.email]
    assert client.get(reverse("catalog:restock_unsubscribe", args=["x" * 43])).status_code == 404
    # After the alert, the link says it has ended and changes nothing.
    after = client.post(reverse("catalog:restock_unsubscribe", args=[keep.token]))
    assert "was sent and has ended" in after.content.decode()
    keep.refresh_from_db()
    assert keep.unsubscribed_at is None and keep.notified_at is not None


def test_after_an_alert_the_address_may_subscribe_again(product, django_capture_on_commit_callbacks):
    (sub,) = confirmed(product, 1)
    restock(product, capture=django_capture_on_commit_callbacks)
    # Sold out again: the same member asks again, a new live subscription.
    from catalog.models import CardCode

    CardCode.objects.filter(product=product).update(status=CardCode.Status.SOLD)
    again, outcome = catalog_services.restock_subscribe(product=product, user=sub.user)
    assert outcome == "subscribed" and again.pk != sub.pk
