//! Rows for multi-row statements, passed as one array per column and unnested in SQL.
//! Each column is named where its values are given; the statement refers to it by that
//! name (`n.<name>`) and [`Rows::unnest`] writes the matching `UNNEST(…) AS n(…)`, so no
//! positional parameter has to be kept in step by hand.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::Postgres;

enum Column<'a> {
    Text(Vec<Option<&'a str>>),
    Int8(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Bytea(Vec<&'a [u8]>),
}

impl Column<'_> {
    fn sql_type(&self) -> &'static str {
        match self {
            Column::Text(_) => "text[]",
            Column::Int8(_) => "int8[]",
            Column::Bool(_) => "bool[]",
            Column::Bytea(_) => "bytea[]",
        }
    }
}

#[derive(Default)]
pub struct Rows<'a> {
    columns: Vec<(&'static str, Column<'a>)>,
}

impl<'a> Rows<'a> {
    pub fn new() -> Self {
        Rows::default()
    }

    pub fn text<I, S>(mut self, name: &'static str, values: I) -> Self
    where
        I: IntoIterator<Item = Option<&'a S>>,
        S: AsRef<str> + ?Sized + 'a,
    {
        let values = values.into_iter().map(|v| v.map(AsRef::as_ref)).collect();
        self.columns.push((name, Column::Text(values)));
        self
    }

    pub fn int8(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = Option<i64>>,
    ) -> Self {
        self.columns
            .push((name, Column::Int8(values.into_iter().collect())));
        self
    }

    pub fn bool(
        mut self,
        name: &'static str,
        values: impl IntoIterator<Item = Option<bool>>,
    ) -> Self {
        self.columns
            .push((name, Column::Bool(values.into_iter().collect())));
        self
    }

    pub fn bytea(mut self, name: &'static str, values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        self.columns
            .push((name, Column::Bytea(values.into_iter().collect())));
        self
    }

    /// `UNNEST($1::text[], …) AS n(id, …)`.
    pub fn unnest(&self) -> String {
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, column))| format!("${}::{}", i + 1, column.sql_type()))
            .collect();
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        format!("UNNEST({}) AS n({})", arrays.join(", "), names.join(", "))
    }

    /// `template` with `{rows}` replaced by [`unnest`](Self::unnest), bound to the columns.
    pub fn query(self, template: &str) -> RowsQuery<'a> {
        RowsQuery {
            sql: template.replace("{rows}", &self.unnest()),
            rows: self,
        }
    }
}

/// A statement and the rows it unnests, ready to bind.
pub struct RowsQuery<'a> {
    sql: String,
    rows: Rows<'a>,
}

impl<'a> RowsQuery<'a> {
    pub fn build(&'a self) -> Query<'a, Postgres, PgArguments> {
        let mut query = super::query(&self.sql);
        for (_, column) in &self.rows.columns {
            query = match column {
                Column::Text(values) => query.bind(values),
                Column::Int8(values) => query.bind(values),
                Column::Bool(values) => query.bind(values),
                Column::Bytea(values) => query.bind(values),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_numbered_in_the_order_they_are_named() {
        let ids = ["a", "b"];
        let rows = Rows::new()
            .text("id", ids.iter().map(|s| Some(*s)))
            .int8("at", [Some(1), None])
            .bool("flag", [Some(true), Some(false)]);
        assert_eq!(
            rows.unnest(),
            "UNNEST($1::text[], $2::int8[], $3::bool[]) AS n(id, at, flag)"
        );
        let query = rows.query("SELECT n.id FROM {rows}");
        assert!(query.sql.starts_with("SELECT n.id FROM UNNEST($1::text[]"));
    }
}
