//! A Kubernetes `LabelSelector` (a Link's, a workload's) as the label
//! selector the API's list and watch calls take (`app=web,tier in (a,b)`).
//! An operator other than the four Kubernetes knows is refused, naming
//! where it is: read loosely, it could select more than was meant.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The query form of `selector` (empty for an empty selector, which
/// selects everything); an error naming `matchExpressions[i].operator`
/// when an operator is not `In`, `NotIn`, `Exists` or `DoesNotExist`.
pub fn query(selector: &LabelSelector) -> Result<String, String> {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let key = &requirement.key;
        let values = requirement.values.clone().unwrap_or_default().join(",");
        parts.push(match requirement.operator.as_str() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => {
                return Err(format!(
                    "matchExpressions[{i}].operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                ));
            }
        });
    }
    Ok(parts.join(","))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn every_kubernetes_operator_is_written_as_the_api_reads_it() {
        let selector = LabelSelector {
            match_labels: Some([("tier".to_owned(), "web".to_owned())].into()),
            match_expressions: Some(vec![
                requirement("env", "In", &["prod", "staging"]),
                requirement("zone", "NotIn", &["a"]),
                requirement("team", "Exists", &[]),
                requirement("legacy", "DoesNotExist", &[]),
            ]),
        };
        assert_eq!(
            query(&selector),
            Ok("tier=web,env in (prod,staging),zone notin (a),team,!legacy".into())
        );
        assert_eq!(query(&LabelSelector::default()), Ok(String::new()));
    }

    /// Attack: an operator read as "does not exist" would select every
    /// object without the label instead of refusing the selector.
    #[test]
    fn an_unknown_operator_is_refused_by_position() {
        let selector = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                requirement("env", "In", &["prod"]),
                requirement("exported", "Bogus", &[]),
            ]),
        };
        let refused = query(&selector).expect_err("a bogus operator was taken");
        assert!(
            refused.contains("matchExpressions[1].operator \"Bogus\""),
            "{refused}"
        );
    }
}
