"""What pages promise buyers follows the configuration: the refund window and the SLA policies."""

import pytest
from django.core import mail

from aftersales.models import Kind, SlaPolicy
from aftersales.services import promises
from tests.factories import ProductFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def test_defaults_are_seven_days_and_48_hours(client):
    page = client.get("/").content.decode()
    assert "7-day refund of unused codes" in page
    assert "Complaints answered within 48 h" in page
    assert promises.first_response_hours() == 48  # the policies migration aftersales/0002


def test_the_refund_window_setting_is_what_pages_promise(client, settings):
    settings.REFUND_WINDOW_DAYS = 10
    product = ProductFactory(refund_policy="")
    home = client.get("/").content.decode()
    assert "10-day refund of unused codes" in home and "7-day" not in home
    page = client.get(product.get_absolute_url()).content.decode()
    assert "refunded within 10 days" in page
    assert "10-day no-reason refund for codes you have not revealed" in page  # the standard policy
    assert "7 days" not in page and "7-day" not in page


def test_a_product_policy_of_its_own_replaces_the_standard_one(client):
    product = ProductFactory(refund_policy="Refunds only for unopened codes, within 3 days.")
    page = client.get(product.get_absolute_url()).content.decode()
    assert "Refunds only for unopened codes, within 3 days." in page
    assert "no-reason refund for codes you have not revealed" not in page


def test_the_longest_sla_policy_is_the_promise_and_a_change_shows_at_once(client, django_assert_max_num_queries):
    assert "answered within 48 h" in client.get("/").content.decode()
    policy = SlaPolicy.objects.get(kind=Kind.OTHER)
    policy.first_response_hours = 72
    policy.save()  # forgets the cached figure
    assert "answered within 72 h" in client.get("/").content.decode()
    # Cached: reading the promise again costs no query.
    with django_assert_max_num_queries(0):
        assert promises.first_response_hours() == 72
    policy.delete()
    assert promises.first_response_hours() == 48


@pytest.mark.django_db(transaction=True)
def test_the_delivery_email_states_the_configured_window(settings, buyer):
    from tests.builders import delivered_order

    settings.REFUND_WINDOW_DAYS = 14
    mail.outbox.clear()
    delivered_order(buyer, quantity=1)
    bodies = [m.body for m in mail.outbox if buyer.email in m.to]
    assert len(bodies) == 1
    assert "within 14 days" in bodies[0]


def test_a_policy_change_is_forgotten_again_when_it_commits(django_capture_on_commit_callbacks):
    """Another process reading the promise between the save and the commit finds the old row
    (still the committed one) and puts the old figure back in the shared cache: the change must
    not wait for that entry to expire (CACHE_SECONDS)."""
    from django.core.cache import cache

    assert promises.first_response_hours() == 48
    policy = SlaPolicy.objects.get(kind=Kind.OTHER)
    with django_capture_on_commit_callbacks(execute=True):
        policy.first_response_hours = 72
        policy.save()  # forgets the cached figure
        cache.set(promises.CACHE_KEY, 48, promises.CACHE_SECONDS)  # the other process's read, before the commit
    assert promises.first_response_hours() == 72
