# ApiCallback moves from agents to orders (issue 11: agents sits below orders). State only:
# the table keeps its name (agents_apicallback) and its rows; its content type (and so the
# permissions granted on it) is relabelled, so staff who could resend callbacks still can.

import django.db.models.deletion
from django.db import migrations, models


def content_type_to(app_label: str, other: str):
    def move(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        old = ContentType.objects.filter(app_label=other, model="apicallback")
        if old.exists():
            # A fresh, unused row for the new label (there is none while migrating) must not block the move.
            ContentType.objects.filter(app_label=app_label, model="apicallback").delete()
            old.update(app_label=app_label)

    return move


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0003_withdrawal_reveal_permission"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0005_delivery_due"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="ApiCallback",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("event", models.CharField(max_length=30, verbose_name="event")),
                        ("url", models.URLField(max_length=300, verbose_name="URL")),
                        ("payload", models.TextField(verbose_name="payload")),
                        (
                            "status",
                            models.CharField(
                                choices=[("pending", "To send"), ("delivered", "Delivered"), ("failed", "Given up")],
                                default="pending",
                                max_length=10,
                                verbose_name="status",
                            ),
                        ),
                        ("attempts", models.PositiveSmallIntegerField(default=0, verbose_name="attempts")),
                        (
                            "next_attempt_at",
                            models.DateTimeField(blank=True, db_index=True, null=True, verbose_name="next attempt"),
                        ),
                        (
                            "last_status_code",
                            models.PositiveSmallIntegerField(blank=True, null=True, verbose_name="last HTTP status"),
                        ),
                        ("last_error", models.CharField(blank=True, max_length=300, verbose_name="last error")),
                        ("delivered_at", models.DateTimeField(blank=True, null=True, verbose_name="delivered")),
                        ("created_at", models.DateTimeField(auto_now_add=True, verbose_name="created")),
                        (
                            "agent",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="callbacks",
                                to="agents.agent",
                                verbose_name="agent",
                            ),
                        ),
                        (
                            "key",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="callbacks",
                                to="agents.apikey",
                                verbose_name="API key",
                            ),
                        ),
                        (
                            "order",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="orders.order",
                                verbose_name="order",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "API callback",
                        "verbose_name_plural": "API callbacks",
                        "db_table": "agents_apicallback",
                        "ordering": ("-id",),
                        "constraints": [models.UniqueConstraint(fields=("order", "event"), name="apicallback_once_per_event")],
                    },
                ),
            ],
        ),
        migrations.RunPython(content_type_to("orders", "agents"), content_type_to("agents", "orders")),
    ]
