//! The operator's `[[hsm_clusters]]` as the core's [`HsmConnector`]: an
//! account's custom key store names a cluster id, and only here does that
//! id become a PKCS#11 module and token label (docs/hsm.md).

use std::collections::HashMap;
use std::sync::Arc;

use keywarden_core::ops::custom_key_stores::{
    HsmCluster, HsmConnectError, HsmConnector, PROTECTOR_PREFIX,
};
use keywarden_core::protector::KeyProtector;
use keywarden_core::secret::Secret;
use keywarden_protector_pkcs11::{OpenError, Pkcs11Config, Pkcs11Protector};

/// The configured clusters, with their trust anchors read at start.
pub struct Clusters {
    clusters: HashMap<String, (crate::config::HsmCluster, Option<String>)>,
}

impl Clusters {
    /// The clusters of `config`, reading each trust anchor file.
    pub fn new(config: &crate::config::Config) -> anyhow::Result<Self> {
        let mut clusters = HashMap::new();
        for c in &config.hsm_clusters {
            let anchor = match &c.trust_anchor_file {
                Some(file) => Some(std::fs::read_to_string(file).map_err(|e| {
                    anyhow::anyhow!(
                        "hsm cluster {}: reading trust_anchor_file {}: {e}",
                        c.id,
                        file.display()
                    )
                })?),
                None => None,
            };
            clusters.insert(c.id.clone(), (c.clone(), anchor));
        }
        Ok(Clusters { clusters })
    }
}

impl HsmConnector for Clusters {
    fn cluster(&self, id: &str) -> Option<HsmCluster> {
        self.clusters.get(id).map(|(c, anchor)| HsmCluster {
            id: c.id.clone(),
            // Related clusters reach the same token: the same module and
            // token label.
            token: format!("{}\n{}", c.module.display(), c.token_label),
            trust_anchor: anchor.clone(),
        })
    }

    fn connect(
        &self,
        store_id: &str,
        cluster: &str,
        pin: &Secret,
    ) -> Result<Arc<dyn KeyProtector>, HsmConnectError> {
        let (c, _) = self
            .clusters
            .get(cluster)
            .ok_or(HsmConnectError::ClusterNotFound)?;
        // A PIN that is not UTF-8 cannot be a token's PIN here.
        let pin =
            std::str::from_utf8(pin.expose()).map_err(|_| HsmConnectError::InvalidCredentials)?;
        let protector = Pkcs11Protector::open(Pkcs11Config {
            module: c.module.clone(),
            token_label: c.token_label.clone(),
            pin: zeroize::Zeroizing::new(pin.to_owned()),
            sessions: c.sessions,
            protector_id: format!("{PROTECTOR_PREFIX}{store_id}"),
        })
        .map_err(|e| match e {
            OpenError::LoginRefused => HsmConnectError::InvalidCredentials,
            OpenError::Unavailable(e) => HsmConnectError::Unreachable(e.to_string()),
        })?;
        tracing::info!(store = store_id, cluster, "custom key store connected");
        Ok(Arc::new(protector))
    }
}
