//! Validation of tool arguments against the JSON-schema subset our tools declare: `type`
//! (object, string, integer, number, boolean, array), `properties`, `required`,
//! `additionalProperties: false`, `enum`, `minLength`/`maxLength`, `minimum`/`maximum`, `items`.
//! Errors name the offending field by its JSON path.

use serde_json::Value;

pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "arguments")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            return Err(format!("{path} must be of type {t}, not {actual}"));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let list: Vec<String> = options.iter().map(Value::to_string).collect();
        return Err(format!("{path} must be one of {}", list.join(", ")));
    }
    match value {
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                return Err(format!("{path} must be at least {min} characters"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                return Err(format!("{path} must be at most {max} characters"));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                return Err(format!("{path} must be at least {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                return Err(format!("{path} must be at most {max}"));
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        return Err(format!("{path}.{r} is required"));
                    }
                }
            }
            for (k, v) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(s, v, &format!("{path}.{k}"))?,
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("{path}.{k} is not a known argument"));
                    }
                    None => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_field() {
        let s = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}, "n": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string"}}, "mode": {"enum": ["a", "b"]}}, "required": ["name"], "additionalProperties": false});
        assert_eq!(validate(&s, &json!({"name": "abc"})), Ok(()));
        assert_eq!(validate(&s, &json!({})), Err("arguments.name is required".into()));
        assert_eq!(validate(&s, &json!({"name": 5})), Err("arguments.name must be of type string, not integer".into()));
        assert_eq!(validate(&s, &json!({"name": "abcd"})), Err("arguments.name must be at most 3 characters".into()));
        assert_eq!(validate(&s, &json!({"name": "a", "n": 0})), Err("arguments.n must be at least 1".into()));
        assert_eq!(
            validate(&s, &json!({"name": "a", "tags": ["x", 1]})),
            Err("arguments.tags[1] must be of type string, not integer".into())
        );
        assert_eq!(
            validate(&s, &json!({"name": "a", "mode": "c"})),
            Err("arguments.mode must be one of \"a\", \"b\"".into())
        );
        assert_eq!(validate(&s, &json!({"name": "a", "x": 1})), Err("arguments.x is not a known argument".into()));
    }
}
