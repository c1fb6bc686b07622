//! The bulk path of a CSV fixture into an empty PostgreSQL table: staging data is cattle, so
//! the load trades durability and incremental checks for speed, never the result.
//!
//! In one transaction (`psql -1`): `synchronous_commit` off; the table's plain indexes and the
//! foreign keys from or to it dropped, their definitions kept; the (empty) table truncated, so
//! that `COPY ... FREEZE` writes its rows frozen and all-visible; then the indexes built and the
//! foreign keys added back, under their own names, from the kept definitions — one sort per
//! index and one join per key instead of a btree insert and a key lookup per row. Same rows,
//! same schema (the definitions come from `pg_get_indexdef` / `pg_get_constraintdef`).
//!
//! Only an empty, ordinary table without `ON TRUNCATE` triggers takes this path; an index or
//! key with something attached (a comment, `CLUSTER`, replica identity, per-column statistics,
//! its own tablespace, a partition's inherited key) is left in place. Anything else, or any
//! failure (a bad row, a key the data breaks), rolls the transaction back, and the caller runs
//! the plain `COPY`, whose error names the file and line as before. `STAGECTL_PLAIN_COPY=1`
//! turns the bulk path off.

/// Whether the bulk path is on (`STAGECTL_PLAIN_COPY=1` turns it off).
pub(super) fn enabled() -> bool {
    std::env::var_os("STAGECTL_PLAIN_COPY").is_none_or(|v| v.is_empty() || v == "0")
}

/// The dollar-quote tag of the DO blocks: a table name holding a `$` takes the plain path.
const TAG: &str = "$stagectl_bulk$";

/// The statements of the bulk load of `table` around `copy` (a `COPY ... FREEZE`), one `-c`
/// each; `None` when the name cannot be embedded.
pub(super) fn statements(table: &str, copy: &str) -> Option<Vec<String>> {
    if table.contains('$') || table.contains('\0') {
        return None;
    }
    let literal = super::quote_ident(table).replace('\'', "''");
    let prepare = format!(
        r#"DO {TAG}
DECLARE
  t regclass := to_regclass('{literal}');
  deferred text[] := '{{}}';
  r record;
  has_rows boolean;
BEGIN
  IF t IS NULL OR (SELECT relkind <> 'r' OR relispartition FROM pg_class WHERE oid = t) THEN
    RAISE EXCEPTION 'stagectl: no bulk load into %', '{literal}';
  END IF;
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', t) INTO has_rows;
  IF has_rows OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = t AND NOT tgisinternal AND tgtype & 32 <> 0) THEN
    RAISE EXCEPTION 'stagectl: no bulk load into %', t;
  END IF;
  FOR r IN
    SELECT i.indexrelid::regclass AS idx, pg_get_indexdef(i.indexrelid) AS def
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid = t AND i.indisvalid AND i.indisready AND NOT i.indisclustered AND NOT i.indisreplident
      AND c.reltablespace = 0
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
      AND NOT EXISTS (SELECT 1 FROM pg_description d WHERE d.objoid = i.indexrelid AND d.classoid = 'pg_class'::regclass)
      AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0)
    ORDER BY c.relname
  LOOP
    deferred := deferred || r.def;
    EXECUTE format('DROP INDEX %s', r.idx);
  END LOOP;
  FOR r IN
    SELECT k.conname, k.conrelid::regclass AS rel, pg_get_constraintdef(k.oid) AS def
    FROM pg_constraint k
    WHERE k.contype = 'f' AND (k.conrelid = t OR k.confrelid = t) AND k.conparentid = 0
      AND NOT EXISTS (SELECT 1 FROM pg_description d WHERE d.objoid = k.oid AND d.classoid = 'pg_constraint'::regclass)
    ORDER BY k.conrelid, k.conname
  LOOP
    deferred := deferred || format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.rel, r.conname, r.def);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
  END LOOP;
  EXECUTE format('TRUNCATE ONLY %s', t);
  PERFORM set_config('stagectl.deferred', array_to_json(deferred)::text, true);
END {TAG}"#
    );
    let finish = format!(
        r#"DO {TAG}
DECLARE
  s text;
BEGIN
  FOR s IN SELECT json_array_elements_text(current_setting('stagectl.deferred')::json) LOOP
    EXECUTE s;
  END LOOP;
END {TAG}"#
    );
    Some(vec![
        "SET synchronous_commit = off".to_string(),
        "SET LOCAL default_tablespace = ''".to_string(),
        "SET LOCAL maintenance_work_mem = '128MB'".to_string(),
        prepare,
        copy.to_string(),
        finish,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_embedded_as_a_literal_and_a_dollar_takes_the_plain_path() {
        let s = statements("it's", "COPY x").unwrap();
        assert!(s[3].contains("to_regclass('\"it''s\"')"), "{}", s[3]);
        assert_eq!(s[4], "COPY x");
        assert!(statements("a$b", "COPY x").is_none());
    }
}
