//! Turning Kubernetes objects into one YAML stream for `kubectl apply -f -`.

use serde::Serialize;

/// One object of a manifest, serialized with its apiVersion and kind.
pub type Object = serde_json::Value;

/// Any typed Kubernetes object as an [`Object`].
pub fn object<T: Serialize>(value: &T) -> anyhow::Result<Object> {
    Ok(serde_json::to_value(value)?)
}

/// The objects as YAML documents separated by `---`, in the given order.
pub fn to_yaml(objects: &[Object]) -> anyhow::Result<String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// What `kubectl delete -f -` needs of `object`: its apiVersion, kind,
/// name and (when namespaced) namespace.
pub fn reference(object: &Object) -> Object {
    let mut reference = serde_json::json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "metadata": {"name": object["metadata"]["name"]},
    });
    if let Some(namespace) = object["metadata"]["namespace"].as_str() {
        reference["metadata"]["namespace"] = namespace.into();
    }
    reference
}
