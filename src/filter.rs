//! Record filters of the Scrapy Cloud storage API: each `filter` parameter
//! is a JSON `[field, operator, values]`, and a record is kept when every
//! filter holds. Used by every stream that takes `filter` (activity, job
//! data, collections).

use serde_json::{Map, Value};

/// One parsed `[field, operator, values]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    field: String,
    operator: Operator,
    /// The values compared with; a single value is a list of one.
    values: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Operator {
    /// The field equals one of the values.
    Equal,
    /// The field equals none of the values.
    NotEqual,
    Greater,
    Less,
    GreaterOrEqual,
    LessOrEqual,
    /// A text field contains one of the values, or a list field holds one.
    Contains,
    /// A list field holds one of the values.
    HasElement,
    /// A list field holds none of the values.
    HasNotElement,
    /// The field is present (with a true value) or absent (false).
    Exists,
}

/// Why a `filter` parameter cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid filter {text}: {reason}")]
pub struct FilterError {
    text: String,
    reason: &'static str,
}

impl Filter {
    /// Parses one `filter` parameter.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let error = |reason| FilterError {
            text: text.to_string(),
            reason,
        };
        let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(text) else {
            return Err(error("expected a JSON array [field, operator, values]"));
        };
        let [field, operator, values] = <[Value; 3]>::try_from(parts)
            .map_err(|_| error("expected three elements [field, operator, values]"))?;
        let Value::String(field) = field else {
            return Err(error("the field must be a string"));
        };
        let operator = match operator.as_str() {
            Some("=") | Some("==") | Some("in") => Operator::Equal,
            Some("!=") | Some("notin") => Operator::NotEqual,
            Some(">") => Operator::Greater,
            Some("<") => Operator::Less,
            Some(">=") => Operator::GreaterOrEqual,
            Some("<=") => Operator::LessOrEqual,
            Some("contains") => Operator::Contains,
            Some("haselement") => Operator::HasElement,
            Some("hasnotelement") => Operator::HasNotElement,
            Some("exists") => Operator::Exists,
            _ => return Err(error("unknown operator")),
        };
        let values = match values {
            Value::Array(values) => values,
            single => vec![single],
        };
        Ok(Filter {
            field,
            operator,
            values,
        })
    }

    /// Whether `record` passes this filter.
    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        let field = record.get(&self.field);
        let any = |test: &dyn Fn(&Value) -> bool| self.values.iter().any(test);
        match self.operator {
            Operator::Equal => {
                field.is_some_and(|found| any(&|wanted| loosely_equal(found, wanted)))
            }
            Operator::NotEqual => {
                !field.is_some_and(|found| any(&|wanted| loosely_equal(found, wanted)))
            }
            Operator::Greater => self.compare(field, |order| order.is_gt()),
            Operator::Less => self.compare(field, |order| order.is_lt()),
            Operator::GreaterOrEqual => self.compare(field, |order| order.is_ge()),
            Operator::LessOrEqual => self.compare(field, |order| order.is_le()),
            Operator::Contains => match field {
                Some(Value::String(text)) => {
                    any(&|wanted| wanted.as_str().is_some_and(|part| text.contains(part)))
                }
                Some(Value::Array(items)) => {
                    any(&|wanted| items.iter().any(|item| loosely_equal(item, wanted)))
                }
                _ => false,
            },
            Operator::HasElement => match field {
                Some(Value::Array(items)) => {
                    any(&|wanted| items.iter().any(|item| loosely_equal(item, wanted)))
                }
                _ => false,
            },
            Operator::HasNotElement => match field {
                Some(Value::Array(items)) => {
                    !any(&|wanted| items.iter().any(|item| loosely_equal(item, wanted)))
                }
                _ => true,
            },
            Operator::Exists => {
                let wanted = self.values.first().and_then(Value::as_bool).unwrap_or(true);
                field.is_some() == wanted
            }
        }
    }

    /// Compares the field with the first value: numbers as numbers, texts
    /// as texts; anything else never passes.
    fn compare(&self, field: Option<&Value>, test: fn(std::cmp::Ordering) -> bool) -> bool {
        let (Some(found), Some(wanted)) = (field, self.values.first()) else {
            return false;
        };
        let order = match (found, wanted) {
            (Value::Number(a), Value::Number(b)) => a
                .as_f64()
                .zip(b.as_f64())
                .and_then(|(a, b)| a.partial_cmp(&b)),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            _ => None,
        };
        order.is_some_and(test)
    }
}

/// Equality where `1` and `1.0` are the same number.
fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => a == b,
    }
}

/// Parses every `filter` parameter.
pub fn parse_all(texts: &[String]) -> Result<Vec<Filter>, FilterError> {
    texts.iter().map(|text| Filter::parse(text)).collect()
}

/// Whether `record` passes every filter.
pub fn all_match(filters: &[Filter], record: &Map<String, Value>) -> bool {
    filters.iter().all(|filter| filter.matches(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn passes(filter: &str, value: Value) -> bool {
        Filter::parse(filter).unwrap().matches(&record(value))
    }

    #[test]
    fn operators() {
        assert!(passes(r#"["c", ">", [5]]"#, json!({"c": 9})));
        assert!(!passes(r#"["c", ">", [5]]"#, json!({"c": 5})));
        assert!(passes(r#"["c", ">=", [5]]"#, json!({"c": 5.0})));
        assert!(passes(r#"["level", ">=", [40]]"#, json!({"level": 50})));
        assert!(!passes(r#"["level", ">=", [40]]"#, json!({"level": 20})));
        assert!(passes(r#"["name", "=", ["a", "b"]]"#, json!({"name": "b"})));
        assert!(!passes(r#"["name", "=", ["a"]]"#, json!({"other": "a"})));
        assert!(passes(
            r#"["name", "contains", ["ell"]]"#,
            json!({"name": "hello"})
        ));
        assert!(passes(
            r#"["tags", "haselement", ["x"]]"#,
            json!({"tags": ["x", "y"]})
        ));
        assert!(passes(
            r#"["tags", "hasnotelement", ["z"]]"#,
            json!({"tags": ["x"]})
        ));
        assert!(!passes(
            r#"["tags", "hasnotelement", ["x"]]"#,
            json!({"tags": ["x"]})
        ));
        assert!(passes(r#"["c", "<", 3]"#, json!({"c": 2})));
        assert!(!passes(r#"["c", "<", 3]"#, json!({"c": "2"})));
    }

    #[test]
    fn malformed_filters_are_errors() {
        assert!(Filter::parse("nope").is_err());
        assert!(Filter::parse(r#"["c", ">"]"#).is_err());
        assert!(Filter::parse(r#"["c", "~", [1]]"#).is_err());
        assert!(Filter::parse(r#"[1, "=", [1]]"#).is_err());
    }
}
