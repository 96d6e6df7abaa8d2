"""store/driver.py: one SQL text, translated for each driver."""

from __future__ import annotations

from sqlalchemy import Engine

from click2call.store.driver import Driver, Sql


def test_named_placeholders_become_psycopgs_and_nothing_else_changes() -> None:
    sql = Sql("SELECT :a, CAST(:b AS TEXT), 'x%y' LIKE :c, '1'::int, :a_2 WHERE x=:c")
    assert sql.sqlite == "SELECT :a, CAST(:b AS TEXT), 'x%y' LIKE :c, '1'::int, :a_2 WHERE x=:c"
    assert sql.postgresql == (
        "SELECT %(a)s, CAST(%(b)s AS TEXT), 'x%%y' LIKE %(c)s, '1'::int, %(a_2)s WHERE x=%(c)s"
    )


def test_a_text_for_postgresql_alone_is_translated_the_same_way() -> None:
    sql = Sql("SELECT :a", "SELECT :a::text || '%'")
    assert (sql.sqlite, sql.postgresql) == ("SELECT :a", "SELECT %(a)s::text || '%%'")


def test_the_statements_run_as_written_on_each_database(database: Engine) -> None:
    like = Sql("SELECT :word LIKE 'ab%', :word || '%'")
    with database.begin() as conn:
        row = Driver(conn).execute(like, {"word": "abc"}).fetchone()
    assert tuple(row) in {(1, "abc%"), (True, "abc%")}
