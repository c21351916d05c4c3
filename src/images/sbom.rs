//! The software bill of materials each image carries, at
//! `/usr/share/doc/mesh/sbom.spdx.json`: an SPDX 2.3 document listing what
//! the image's files came from — mesh's binaries (with their SHA-256) and
//! the Debian packages the rest was taken from (with their package URL).
//! Like the layers, it is the same for the same inputs (its time is the
//! build's `SOURCE_DATE_EPOCH`, its namespace derived from its content).

use serde_json::json;

use super::debian::Package;
use super::layer::sha256;

/// Where the document is in every image.
pub const PATH: &str = "usr/share/doc/mesh/sbom.spdx.json";

/// One of mesh's binaries in the image.
#[derive(Debug)]
pub struct Binary<'a> {
    pub name: &'a str,
    /// `sha256:…` of its contents.
    pub digest: String,
}

/// The document for `image`, built `created` (RFC 3339).
pub fn document(
    image: &str,
    binaries: &[Binary<'_>],
    packages: &[Package],
    revision: &str,
    created: &str,
) -> Vec<u8> {
    let id = |name: &str| {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("SPDXRef-Package-{safe}")
    };
    let mut described = Vec::new();
    let mut entries = Vec::new();
    for binary in binaries {
        described.push(id(binary.name));
        entries.push(json!({
            "SPDXID": id(binary.name),
            "name": binary.name,
            "versionInfo": super::TAG,
            "supplier": "Organization: mesh",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": env!("CARGO_PKG_LICENSE"),
            "licenseDeclared": env!("CARGO_PKG_LICENSE"),
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("built from source revision {revision}"),
            "checksums": [{
                "algorithm": "SHA256",
                "checksumValue": binary.digest.trim_start_matches("sha256:"),
            }],
        }));
    }
    for package in packages {
        described.push(id(&package.name));
        entries.push(json!({
            "SPDXID": id(&package.name),
            "name": package.name,
            "versionInfo": package.version,
            "supplier": "Organization: Debian",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!(
                    "pkg:deb/debian/{}@{}?arch=amd64",
                    package.name,
                    package.version.replace('+', "%2B")
                ),
            }],
        }));
    }
    let relationships: Vec<serde_json::Value> = described
        .iter()
        .map(|package| {
            json!({
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": package,
            })
        })
        .collect();
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("mesh {image} {}", super::TAG),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: mesh images build {}", super::TAG)],
        },
        "packages": entries,
        "relationships": relationships,
    });
    // A namespace unique to this content, and the same for the same content.
    let content = serde_json::to_vec(&document).unwrap_or_default();
    document["documentNamespace"] = format!(
        "https://mesh.dev/spdx/{image}/{}",
        sha256(&content).trim_start_matches("sha256:")
    )
    .into();
    serde_json::to_vec_pretty(&document).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_each_binary_by_digest_and_each_package_by_purl() {
        let packages = [Package {
            name: "libc6".into(),
            version: "2.36-9+deb12u14".into(),
        }];
        let binaries = [Binary {
            name: "mesh-proxy",
            digest: sha256(b"binary"),
        }];
        let bytes = document("proxy", &binaries, &packages, "abc", "1970-01-01T00:00:00Z");
        assert_eq!(
            bytes,
            document("proxy", &binaries, &packages, "abc", "1970-01-01T00:00:00Z"),
            "the same inputs, the same document"
        );
        let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        let proxy = &doc["packages"][0];
        assert_eq!(proxy["name"], "mesh-proxy");
        assert_eq!(
            proxy["checksums"][0]["checksumValue"],
            sha256(b"binary").trim_start_matches("sha256:")
        );
        assert_eq!(
            doc["packages"][1]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64"
        );
        assert_eq!(doc["relationships"].as_array().map(Vec::len), Some(2));
        assert!(
            doc["documentNamespace"]
                .as_str()
                .is_some_and(|n| n.starts_with("https://mesh.dev/spdx/proxy/"))
        );
    }
}
