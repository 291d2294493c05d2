//! AWS KMS, the only module that calls it: `Sign` for the sealer (the one
//! permission a writer needs) and `GetPublicKey` for the auditor.
//!
//! Signatures are asked for with `MessageType=RAW`: KMS hashes the string
//! to sign itself, exactly as a local RSA key does, so one verifier serves
//! both (and emulators that mishandle `DIGEST` agree with real KMS).

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use super::signer::{KeyError, PublicKey, SignError};
use crate::aws::describe;

/// An asymmetric `SIGN_VERIFY` KMS key.
#[derive(Debug, Clone)]
pub struct KmsKey {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsKey {
    /// The key `key_id` (id, ARN or alias) reached through `client`.
    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> Self {
        Self { client, key_id }
    }

    /// The key as configured.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `RSASSA_PKCS1_V1_5_SHA_256` over `message`.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let output = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
            .send()
            .await
            .map_err(|error| {
                SignError(format!(
                    "KMS Sign with --digest-kms-key-id {}: {} (the key must be an asymmetric \
                     SIGN_VERIFY RSA key and the role needs kms:Sign on it)",
                    self.key_id,
                    describe(&error)
                ))
            })?;
        output
            .signature()
            .map(|blob| blob.as_ref().to_vec())
            .ok_or_else(|| SignError("KMS Sign returned no signature".into()))
    }

    /// The key's public half (`GetPublicKey`), for `verify`.
    pub async fn public_key(&self) -> Result<PublicKey, String> {
        let output = self
            .client
            .get_public_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|error| {
                format!(
                    "KMS GetPublicKey of --digest-kms-key-id {}: {} (an auditor needs \
                     kms:GetPublicKey; or pass --public-key FILE)",
                    self.key_id,
                    describe(&error)
                )
            })?;
        let der = output
            .public_key()
            .map(|blob| blob.as_ref().to_vec())
            .ok_or("KMS GetPublicKey returned no key")?;
        PublicKey::from_der(der).map_err(|e: KeyError| e.to_string())
    }
}
