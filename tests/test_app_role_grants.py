"""The application's database role as docker-compose.yml creates it and README grants it.

docker-compose.yml's ``postgres-init`` creates ``kamarket_app`` on an empty volume, before the
first migration, and relies on default privileges for every table and sequence the migrations
(run as the tables' owner) create then and later. README ("Deploying") tells the operator of an
existing database to run the same SQL plus two GRANTs for what already exists. Both are run here,
as written in those files, against this test database (in the test's transaction: the role and
its grants are rolled back): the tables that exist, their sequences, and a table a later
migration creates are reachable by the role, rows only.
"""

import re
import uuid

import pytest
import yaml
from django.db import DatabaseError, connection, transaction

from tests.test_deploy_check import BASE_DIR

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def sql(statement: str):
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchone() if cursor.description else None


def refused(statement: str) -> str:
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        sql(statement)
    return str(caught.value)


def as_here(statement: str, role: str) -> str:
    """A statement of the deployment files, for this database, owner and a throwaway role."""
    owner = sql("SELECT current_user")[0]
    statement = re.sub(r"PASSWORD '[^']*'", "PASSWORD 'test-only'", statement)
    statement = statement.replace("kamarket_app", role)
    statement = re.sub(r"\bDATABASE kamarket\b", f'DATABASE "{connection.settings_dict["NAME"]}"', statement)
    return re.sub(r"\bFOR ROLE kamarket\b", f'FOR ROLE "{owner}"', statement)


def init_sql() -> list[str]:
    content = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["configs"]["postgres-init"]["content"]
    body = "\n".join(line for line in content.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def readme_grants() -> list[str]:
    readme = (BASE_DIR / "README.md").read_text()
    deploying = readme[readme.index("## Deploying") : readme.index("## Running in production")]
    return [" ".join(g.split()) for g in re.findall(r"`(GRANT [^`]+)`", deploying)]


def test_an_existing_database_granted_as_the_readme_says_serves_the_app_role_rows_only():
    role = f"test_app_{uuid.uuid4().hex[:12]}"
    statements = init_sql()
    assert statements[0].startswith("CREATE ROLE kamarket_app") and any("DEFAULT PRIVILEGES" in s for s in statements)
    grants = readme_grants()
    assert len(grants) == 2 and "ALL TABLES" in grants[0] and "ALL SEQUENCES" in grants[1]

    for statement in statements:
        sql(as_here(statement, role))
    # The init SQL alone covers only tables created after it: on an existing database the app
    # role reaches nothing until README's GRANTs have run.
    sql(f'SET LOCAL ROLE "{role}"')
    assert "permission denied" in refused("SELECT 1 FROM orders_order LIMIT 1")
    sql("RESET ROLE")
    for statement in grants:
        sql(as_here(statement, role))
    # A later migration, as the tables' owner: a table with an identity sequence.
    sql("CREATE TABLE audit_drill_later (id bigserial PRIMARY KEY, note text)")

    sql(f'SET LOCAL ROLE "{role}"')
    try:
        sql("SELECT count(*) FROM orders_order")
        assert sql("SELECT nextval(pg_get_serial_sequence('orders_order', 'id'))")[0] > 0  # existing sequence
        assert sql("INSERT INTO audit_drill_later (note) VALUES ('x') RETURNING id")[0] > 0  # default privileges
        sql("UPDATE audit_drill_later SET note = 'y'")
        sql("DELETE FROM audit_drill_later")
        # Rows only: nothing of its own, no schema change, no TRUNCATE.
        assert "permission denied" in refused("CREATE TABLE public.t (x int)")
        assert "permission denied" in refused("CREATE TEMP TABLE t (x int)")
        assert "owner" in refused("ALTER TABLE audit_drill_later ADD COLUMN y int")
        assert "permission denied" in refused("TRUNCATE audit_drill_later")
    finally:
        sql("RESET ROLE")
