//! The certificates and keys one local control plane needs, made with rcgen:
//! a cluster CA, the API server's serving certificate, an admin client
//! certificate (group `system:masters`) and the ServiceAccount token signing
//! key, so that TokenRequest and TokenReview work as in a real cluster.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The common name of the client certificate the API server shows the
/// kubelet API: the only caller the node agent's kubelet API serves.
pub const KUBELET_CLIENT_NAME: &str = "kube-apiserver-kubelet-client";

/// The common name of the client certificate the API server shows
/// extension API servers (`--requestheader-allowed-names`).
pub const FRONT_PROXY_CLIENT_NAME: &str = "front-proxy-client";

/// PEM-encoded material for one control plane.
#[derive(Debug, Clone)]
pub struct ControlPlanePki {
    /// The cluster CA certificate; clients trust it, the API server checks
    /// client certificates against it.
    pub ca_cert: String,
    /// The cluster CA key (the controller-manager signs CSRs with it).
    pub ca_key: String,
    /// The API server's serving certificate and key.
    pub serving_cert: String,
    /// Key of `serving_cert`.
    pub serving_key: String,
    /// A client certificate in group `system:masters`, for the kubeconfig.
    pub admin_cert: String,
    /// Key of `admin_cert`.
    pub admin_key: String,
    /// The node agent's serving certificate for the kubelet API (port
    /// 10250), for the same addresses as the API server.
    pub kubelet_cert: String,
    /// Key of `kubelet_cert`.
    pub kubelet_key: String,
    /// The client certificate the API server shows the node agent
    /// (`kubectl logs`), in group `system:masters`.
    pub kubelet_client_cert: String,
    /// Key of `kubelet_client_cert`.
    pub kubelet_client_key: String,
    /// The front-proxy CA: extension API servers (viz's tap) trust the
    /// API server's proxied requests by a client certificate it signed.
    pub front_proxy_ca_cert: String,
    /// The client certificate the API server shows extension API servers.
    pub front_proxy_client_cert: String,
    /// Key of `front_proxy_client_cert`.
    pub front_proxy_client_key: String,
    /// The private key that signs ServiceAccount tokens.
    pub service_account_key: String,
    /// Its public half, which verifies them.
    pub service_account_public_key: String,
}

/// Names and addresses the API server's certificate must carry.
#[derive(Debug, Clone)]
pub struct ServingNames {
    /// The addresses the API server listens on or is reached at.
    pub addresses: Vec<IpAddr>,
    /// The first address of the service CIDR (the `kubernetes` Service).
    pub service_ip: IpAddr,
    /// The cluster domain, for `kubernetes.default.svc.<domain>`.
    pub cluster_domain: String,
}

impl ControlPlanePki {
    /// Generates fresh material for a control plane named `cluster`.
    pub fn generate(cluster: &str, names: &ServingNames) -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = common_name(&format!("mesh-{cluster}-ca"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        let mut dns_names = vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            format!("kubernetes.default.svc.{}", names.cluster_domain),
        ];
        dns_names.dedup();
        let mut serving = CertificateParams::new(dns_names)?;
        serving.distinguished_name = common_name("kube-apiserver");
        serving
            .subject_alt_names
            .extend(names.addresses.iter().copied().map(SanType::IpAddress));
        serving
            .subject_alt_names
            .push(SanType::IpAddress(names.service_ip));
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let mut kubelet = CertificateParams::new(vec!["localhost".to_owned()])?;
        kubelet.distinguished_name = common_name(&format!("mesh-node-{cluster}"));
        kubelet
            .subject_alt_names
            .extend(names.addresses.iter().copied().map(SanType::IpAddress));
        kubelet.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let kubelet_key = KeyPair::generate()?;
        let kubelet_cert = kubelet.signed_by(&kubelet_key, &issuer)?;

        let (admin_cert, admin_key) = masters_client("mesh-admin", &issuer)?;
        let (kubelet_client_cert, kubelet_client_key) =
            masters_client(KUBELET_CLIENT_NAME, &issuer)?;

        // The aggregation layer's own CA, apart from the cluster CA (as
        // kubeadm does): a certificate it signs proves "the API server
        // forwarded this", never a user.
        let front_proxy_ca_key = KeyPair::generate()?;
        let mut front_proxy_ca = CertificateParams::default();
        front_proxy_ca.distinguished_name = common_name(&format!("mesh-{cluster}-front-proxy-ca"));
        front_proxy_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        front_proxy_ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let front_proxy_ca_cert = front_proxy_ca.self_signed(&front_proxy_ca_key)?;
        let front_proxy_issuer = Issuer::new(front_proxy_ca, &front_proxy_ca_key);
        let mut front_proxy_client = CertificateParams::default();
        front_proxy_client.distinguished_name = common_name(FRONT_PROXY_CLIENT_NAME);
        front_proxy_client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let front_proxy_client_key = KeyPair::generate()?;
        let front_proxy_client_cert =
            front_proxy_client.signed_by(&front_proxy_client_key, &front_proxy_issuer)?;

        let service_account_key = KeyPair::generate()?;

        Ok(Self {
            ca_cert: ca_cert.pem(),
            ca_key: ca_key.serialize_pem(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            admin_cert,
            admin_key,
            kubelet_cert: kubelet_cert.pem(),
            kubelet_key: kubelet_key.serialize_pem(),
            kubelet_client_cert,
            kubelet_client_key,
            front_proxy_ca_cert: front_proxy_ca_cert.pem(),
            front_proxy_client_cert: front_proxy_client_cert.pem(),
            front_proxy_client_key: front_proxy_client_key.serialize_pem(),
            service_account_key: service_account_key.serialize_pem(),
            service_account_public_key: service_account_key.public_key_pem(),
        })
    }
}

/// A client certificate (PEM certificate and key) in `system:masters`.
fn masters_client(
    name: &str,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}
