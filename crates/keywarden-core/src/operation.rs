//! The one table of API operations: every operation Keywarden serves, with
//! its wire name and namespace, its quota class and whether cloud products
//! may call it. The server's target parsing, dispatch, quotas, product rules
//! and audit names, the core's usage and grant operation names and the
//! benchmark's targets all derive from it, so adding an operation is one row
//! here plus its handler (the server's exhaustive `match` does not compile
//! without one).
//!
//! A name table, not a protocol: the core still knows nothing about HTTP or
//! JSON. Wire names are stored in the database as grant operations and usage
//! records, so a row's name never changes.

/// The `X-Amz-Target` namespace an operation lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `TrentService.<Op>`: the AWS KMS operations.
    Trent,
    /// `KeywardenService.<Op>`: Keywarden's extensions
    /// (`docs/api-extensions.md`), apart so no future AWS operation can
    /// collide with them.
    Keywarden,
}

impl Namespace {
    /// Both namespaces.
    pub const ALL: [Namespace; 2] = [Namespace::Trent, Namespace::Keywarden];

    /// The target prefix before the dot: `TrentService` or
    /// `KeywardenService`.
    pub fn prefix(self) -> &'static str {
        match self {
            Namespace::Trent => "TrentService",
            Namespace::Keywarden => "KeywardenService",
        }
    }

    /// Splits an `X-Amz-Target` value into its namespace and the name after
    /// the dot; `None` for any other prefix. The name is not checked.
    pub fn split_target(target: &str) -> Option<(Namespace, &str)> {
        Namespace::ALL.into_iter().find_map(|ns| {
            target
                .strip_prefix(ns.prefix())
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|name| (ns, name))
        })
    }
}

/// Which per-account request budget an operation draws from (docs/limits.md;
/// after AWS's quotas, which count cryptographic requests apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaClass {
    /// Cryptographic operations.
    Crypto,
    /// Management operations (everything else, extensions included).
    Manage,
}

/// One row of the table.
struct Row {
    /// The full target, `<namespace prefix>.<wire name>`.
    target: &'static str,
    namespace: Namespace,
    quota: QuotaClass,
    products: bool,
}

/// Builds the enum, `ALL` and the row lookup from one list, so a variant
/// cannot exist without its row. `ns` is `Trent` or `Keywarden`; the target
/// is spelled out by concatenation, so each wire name is written once.
macro_rules! operations {
    ($( $(#[$doc:meta])* $variant:ident = $ns:ident $name:literal, $quota:ident, products: $products:literal; )*) => {
        /// An API operation Keywarden serves. [`Operation::ALL`] lists them
        /// in family order (crypto, data keys, keys, aliases, tags,
        /// rotation, import, grants, keyrings, stores, account).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $( $(#[$doc])* $variant, )*
        }

        impl Operation {
            /// Every operation, in family order.
            pub const ALL: &'static [Operation] = &[ $( Operation::$variant, )* ];

            fn row(self) -> Row {
                match self {
                    $( Operation::$variant => Row {
                        target: concat!(operations!(@prefix $ns), ".", $name),
                        namespace: Namespace::$ns,
                        quota: QuotaClass::$quota,
                        products: $products,
                    }, )*
                }
            }
        }
    };
    (@prefix Trent) => { "TrentService" };
    (@prefix Keywarden) => { "KeywardenService" };
}

operations! {
    // crypto
    /// `Encrypt`.
    Encrypt = Trent "Encrypt", Crypto, products: true;
    /// `Decrypt`.
    Decrypt = Trent "Decrypt", Crypto, products: true;
    /// `ReEncrypt`.
    ReEncrypt = Trent "ReEncrypt", Crypto, products: true;
    // data keys
    /// `GenerateDataKey`.
    GenerateDataKey = Trent "GenerateDataKey", Crypto, products: true;
    /// `GenerateDataKeyWithoutPlaintext`.
    GenerateDataKeyWithoutPlaintext = Trent "GenerateDataKeyWithoutPlaintext", Crypto, products: true;
    /// `GenerateRandom`.
    GenerateRandom = Trent "GenerateRandom", Crypto, products: false;
    // asymmetric, HMAC, key agreement and KEM keys (docs/key-specs.md)
    /// `Sign`.
    Sign = Trent "Sign", Crypto, products: false;
    /// `Verify`.
    Verify = Trent "Verify", Crypto, products: false;
    /// `GetPublicKey`.
    GetPublicKey = Trent "GetPublicKey", Crypto, products: false;
    /// `GenerateMac`.
    GenerateMac = Trent "GenerateMac", Crypto, products: false;
    /// `VerifyMac`.
    VerifyMac = Trent "VerifyMac", Crypto, products: false;
    /// `GenerateDataKeyPair`.
    GenerateDataKeyPair = Trent "GenerateDataKeyPair", Crypto, products: false;
    /// `GenerateDataKeyPairWithoutPlaintext`.
    GenerateDataKeyPairWithoutPlaintext = Trent "GenerateDataKeyPairWithoutPlaintext", Crypto, products: false;
    /// `DeriveSharedSecret`.
    DeriveSharedSecret = Trent "DeriveSharedSecret", Crypto, products: false;
    /// `Encapsulate`.
    Encapsulate = Trent "Encapsulate", Crypto, products: false;
    /// `Decapsulate`.
    Decapsulate = Trent "Decapsulate", Crypto, products: false;
    // keys
    /// `CreateKey`.
    CreateKey = Trent "CreateKey", Manage, products: false;
    /// `DescribeKey`.
    DescribeKey = Trent "DescribeKey", Manage, products: true;
    /// `ListKeys`.
    ListKeys = Trent "ListKeys", Manage, products: false;
    /// `UpdateKeyDescription`.
    UpdateKeyDescription = Trent "UpdateKeyDescription", Manage, products: false;
    /// `EnableKey`.
    EnableKey = Trent "EnableKey", Manage, products: false;
    /// `DisableKey`.
    DisableKey = Trent "DisableKey", Manage, products: false;
    /// `ScheduleKeyDeletion`.
    ScheduleKeyDeletion = Trent "ScheduleKeyDeletion", Manage, products: false;
    /// `CancelKeyDeletion`.
    CancelKeyDeletion = Trent "CancelKeyDeletion", Manage, products: false;
    /// `GetKeyPolicy`.
    GetKeyPolicy = Trent "GetKeyPolicy", Manage, products: false;
    /// `PutKeyPolicy`.
    PutKeyPolicy = Trent "PutKeyPolicy", Manage, products: false;
    /// `ListKeyPolicies`.
    ListKeyPolicies = Trent "ListKeyPolicies", Manage, products: false;
    /// `GetKeyLastUsage`.
    GetKeyLastUsage = Trent "GetKeyLastUsage", Manage, products: false;
    /// `ReplicateKey` (docs/multi-region.md).
    ReplicateKey = Trent "ReplicateKey", Manage, products: false;
    /// `UpdatePrimaryRegion` (docs/multi-region.md).
    UpdatePrimaryRegion = Trent "UpdatePrimaryRegion", Manage, products: false;
    /// `KeywardenService.EnableKeyDeletionProtection`.
    EnableKeyDeletionProtection = Keywarden "EnableKeyDeletionProtection", Manage, products: false;
    /// `KeywardenService.DisableKeyDeletionProtection`.
    DisableKeyDeletionProtection = Keywarden "DisableKeyDeletionProtection", Manage, products: false;
    // aliases
    /// `CreateAlias`.
    CreateAlias = Trent "CreateAlias", Manage, products: false;
    /// `UpdateAlias`.
    UpdateAlias = Trent "UpdateAlias", Manage, products: false;
    /// `DeleteAlias`.
    DeleteAlias = Trent "DeleteAlias", Manage, products: false;
    /// `ListAliases`.
    ListAliases = Trent "ListAliases", Manage, products: false;
    // tags
    /// `TagResource`.
    TagResource = Trent "TagResource", Manage, products: false;
    /// `UntagResource`.
    UntagResource = Trent "UntagResource", Manage, products: false;
    /// `ListResourceTags`.
    ListResourceTags = Trent "ListResourceTags", Manage, products: false;
    // rotation
    /// `EnableKeyRotation`.
    EnableKeyRotation = Trent "EnableKeyRotation", Manage, products: false;
    /// `DisableKeyRotation`.
    DisableKeyRotation = Trent "DisableKeyRotation", Manage, products: false;
    /// `GetKeyRotationStatus`.
    GetKeyRotationStatus = Trent "GetKeyRotationStatus", Manage, products: false;
    /// `RotateKeyOnDemand`.
    RotateKeyOnDemand = Trent "RotateKeyOnDemand", Manage, products: false;
    /// `ListKeyRotations`.
    ListKeyRotations = Trent "ListKeyRotations", Manage, products: false;
    // import
    /// `GetParametersForImport`.
    GetParametersForImport = Trent "GetParametersForImport", Manage, products: false;
    /// `ImportKeyMaterial`.
    ImportKeyMaterial = Trent "ImportKeyMaterial", Manage, products: false;
    /// `DeleteImportedKeyMaterial`.
    DeleteImportedKeyMaterial = Trent "DeleteImportedKeyMaterial", Manage, products: false;
    // grants
    /// `CreateGrant`.
    CreateGrant = Trent "CreateGrant", Manage, products: false;
    /// `ListGrants`.
    ListGrants = Trent "ListGrants", Manage, products: false;
    /// `ListRetirableGrants`.
    ListRetirableGrants = Trent "ListRetirableGrants", Manage, products: false;
    /// `RetireGrant`: products retire the grants given to them.
    RetireGrant = Trent "RetireGrant", Manage, products: true;
    /// `RevokeGrant`.
    RevokeGrant = Trent "RevokeGrant", Manage, products: false;
    // keyrings (docs/integrations/mariadb.md)
    /// `KeywardenService.CreateKeyring`.
    CreateKeyring = Keywarden "CreateKeyring", Manage, products: false;
    /// `KeywardenService.DescribeKeyring`.
    DescribeKeyring = Keywarden "DescribeKeyring", Manage, products: false;
    /// `KeywardenService.ListKeyrings`.
    ListKeyrings = Keywarden "ListKeyrings", Manage, products: false;
    /// `KeywardenService.RotateKeyringKey`.
    RotateKeyringKey = Keywarden "RotateKeyringKey", Manage, products: false;
    /// `KeywardenService.CreateKeyringToken`.
    CreateKeyringToken = Keywarden "CreateKeyringToken", Manage, products: false;
    /// `KeywardenService.RevokeKeyringToken`.
    RevokeKeyringToken = Keywarden "RevokeKeyringToken", Manage, products: false;
    /// `KeywardenService.DeleteKeyring`.
    DeleteKeyring = Keywarden "DeleteKeyring", Manage, products: false;
    // stores
    /// `DescribeCustomKeyStores`.
    DescribeCustomKeyStores = Trent "DescribeCustomKeyStores", Manage, products: false;
    /// `CreateCustomKeyStore` (docs/hsm.md).
    CreateCustomKeyStore = Trent "CreateCustomKeyStore", Manage, products: false;
    /// `ConnectCustomKeyStore`.
    ConnectCustomKeyStore = Trent "ConnectCustomKeyStore", Manage, products: false;
    /// `DisconnectCustomKeyStore`.
    DisconnectCustomKeyStore = Trent "DisconnectCustomKeyStore", Manage, products: false;
    /// `UpdateCustomKeyStore`.
    UpdateCustomKeyStore = Trent "UpdateCustomKeyStore", Manage, products: false;
    /// `DeleteCustomKeyStore`.
    DeleteCustomKeyStore = Trent "DeleteCustomKeyStore", Manage, products: false;
    // account
    /// `KeywardenService.GetAccountBalance` (docs/billing.md).
    GetAccountBalance = Keywarden "GetAccountBalance", Manage, products: false;
}

impl Operation {
    /// The name after the namespace's dot (`Encrypt`). Stored in the
    /// database as grant operations and key usage, so it never changes.
    pub fn wire_name(self) -> &'static str {
        let row = self.row();
        &row.target[row.namespace.prefix().len() + 1..]
    }

    /// The namespace the operation lives in.
    pub fn namespace(self) -> Namespace {
        self.row().namespace
    }

    /// The full `X-Amz-Target` value (`TrentService.Encrypt`).
    pub fn target(self) -> &'static str {
        self.row().target
    }

    /// How the audit log names the operation: its full target, exactly as
    /// a client sends it (docs/audit.md), so `audit query --operation`
    /// matches either the target or the name after the dot.
    pub fn audit_name(self) -> &'static str {
        self.target()
    }

    /// The operation `name` in `namespace`; `None` when that namespace has
    /// no such operation (an extension's name is unknown to `Trent`, and the
    /// other way round).
    pub fn from_target(namespace: Namespace, name: &str) -> Option<Operation> {
        // A linear scan over a few dozen rows, the hot crypto ones first.
        Operation::ALL
            .iter()
            .copied()
            .find(|op| op.namespace() == namespace && op.wire_name() == name)
    }

    /// The operation a full `X-Amz-Target` value names.
    pub fn parse_target(target: &str) -> Option<Operation> {
        let (namespace, name) = Namespace::split_target(target)?;
        Operation::from_target(namespace, name)
    }

    /// The request budget it draws from.
    pub fn quota_class(self) -> QuotaClass {
        self.row().quota
    }

    /// Whether a cloud product's credential may call it (docs/products.md):
    /// the cryptographic operations on keys, `DescribeKey` and
    /// `RetireGrant`. Never an extension.
    pub fn products_may_call(self) -> bool {
        self.row().products
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.target())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn targets_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for &op in Operation::ALL {
            assert!(seen.insert(op.target()), "{op} twice");
            assert_eq!(
                op.target(),
                format!("{}.{}", op.namespace().prefix(), op.wire_name())
            );
            assert_eq!(
                Operation::from_target(op.namespace(), op.wire_name()),
                Some(op)
            );
            assert_eq!(Operation::parse_target(op.target()), Some(op));
            assert_eq!(op.audit_name(), op.target());
            // The wire name is the variant's name (AWS's spelling).
            assert_eq!(format!("{op:?}"), op.wire_name());
        }
        assert_eq!(Operation::ALL.len(), 66);
    }

    #[test]
    fn namespaces_do_not_share_names() {
        for &op in Operation::ALL {
            for ns in Namespace::ALL {
                if ns != op.namespace() {
                    assert_eq!(Operation::from_target(ns, op.wire_name()), None, "{op}");
                }
            }
        }
        assert_eq!(
            Operation::parse_target("TrentService.NoSuchOperation"),
            None
        );
        assert_eq!(Operation::parse_target("TrentServiceEncrypt"), None);
        assert_eq!(Operation::parse_target("Encrypt"), None);
        assert_eq!(
            Namespace::split_target("KeywardenService.X"),
            Some((Namespace::Keywarden, "X"))
        );
    }

    #[test]
    fn products_call_only_key_crypto_describe_and_retire() {
        let allowed: Vec<&str> = Operation::ALL
            .iter()
            .filter(|op| op.products_may_call())
            .map(|op| op.wire_name())
            .collect();
        assert_eq!(
            allowed,
            [
                "Encrypt",
                "Decrypt",
                "ReEncrypt",
                "GenerateDataKey",
                "GenerateDataKeyWithoutPlaintext",
                "DescribeKey",
                "RetireGrant"
            ]
        );
        for &op in Operation::ALL {
            if op.namespace() == Namespace::Keywarden {
                assert!(!op.products_may_call(), "{op}");
            }
        }
    }

    #[test]
    fn crypto_quota_is_the_cryptographic_operations() {
        let crypto: Vec<&str> = Operation::ALL
            .iter()
            .filter(|op| op.quota_class() == QuotaClass::Crypto)
            .map(|op| op.wire_name())
            .collect();
        assert_eq!(
            crypto,
            [
                "Encrypt",
                "Decrypt",
                "ReEncrypt",
                "GenerateDataKey",
                "GenerateDataKeyWithoutPlaintext",
                "GenerateRandom",
                "Sign",
                "Verify",
                "GetPublicKey",
                "GenerateMac",
                "VerifyMac",
                "GenerateDataKeyPair",
                "GenerateDataKeyPairWithoutPlaintext",
                "DeriveSharedSecret",
                "Encapsulate",
                "Decapsulate"
            ]
        );
    }

    /// Grant operations and key usage are stored by name: the names must
    /// stay byte-identical whatever the table does.
    #[test]
    fn stored_names_stay_byte_identical() {
        use crate::model::{CryptoOperation, GrantOperation};
        let grant: Vec<&str> = GrantOperation::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            grant,
            [
                "Decrypt",
                "Encrypt",
                "GenerateDataKey",
                "GenerateDataKeyWithoutPlaintext",
                "ReEncryptFrom",
                "ReEncryptTo",
                "Sign",
                "Verify",
                "GetPublicKey",
                "CreateGrant",
                "RetireGrant",
                "DescribeKey",
                "GenerateDataKeyPair",
                "GenerateDataKeyPairWithoutPlaintext",
                "GenerateMac",
                "VerifyMac",
                "DeriveSharedSecret",
                "Encapsulate",
                "Decapsulate"
            ]
        );
        for op in GrantOperation::ALL {
            assert_eq!(GrantOperation::parse(op.as_str()), Some(op));
        }
        for (op, name) in [
            (CryptoOperation::Encrypt, "Encrypt"),
            (CryptoOperation::Decrypt, "Decrypt"),
            (CryptoOperation::ReEncrypt, "ReEncrypt"),
            (CryptoOperation::GenerateDataKey, "GenerateDataKey"),
            (
                CryptoOperation::GenerateDataKeyWithoutPlaintext,
                "GenerateDataKeyWithoutPlaintext",
            ),
        ] {
            assert_eq!(op.as_str(), name);
            assert_eq!(CryptoOperation::parse(name), Some(op));
        }
    }
}
