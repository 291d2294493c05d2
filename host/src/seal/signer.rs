//! Who signs a digest and how a signature is checked: a local private key
//! (PEM, Ed25519 or RSA) or an AWS KMS key that never leaves KMS; and the
//! public key an auditor holds (PEM, or KMS `GetPublicKey`'s DER).

use std::fmt;
use std::path::Path;

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, PublicKey as RsaPublicKey};
use aws_lc_rs::signature::{
    Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

use super::digest::sha256_hex;
use super::kms::KmsKey;

/// CloudTrail's name for RSASSA-PKCS1-v1_5 with SHA-256.
pub const RSA_SHA256: &str = "SHA256withRSA";
/// Ed25519 (a local key only: KMS has no Ed25519 keys).
pub const ED25519_NAME: &str = "Ed25519";

/// A key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read or is no PEM key of a kind we sign with.
    #[error("{flag} {path}: {detail}")]
    File {
        /// The flag that named it.
        flag: &'static str,
        /// The file.
        path: String,
        /// What is wrong, and the fix.
        detail: String,
    },
    /// A public key (from KMS) that is neither RSA nor Ed25519.
    #[error("the public key is neither RSA nor Ed25519 (KeySpec must be RSA_2048 or larger with KeyUsage SIGN_VERIFY)")]
    Unsupported,
}

/// Signing failed (KMS unreachable or refusing).
#[derive(Debug, thiserror::Error)]
#[error("signing a digest: {0}")]
pub struct SignError(pub String);

/// The digests' signer.
#[derive(Debug)]
pub enum Signer {
    /// A private key held in this process.
    Local(LocalKey),
    /// An asymmetric KMS key: this process can ask for signatures, never
    /// for the key.
    Kms(KmsKey),
}

impl fmt::Debug for LocalKey {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalKey({} {})", self.algorithm(), self.fingerprint)
    }
}

impl Signer {
    /// The `digestSignatureAlgorithm`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Local(key) => key.algorithm(),
            Self::Kms(_) => RSA_SHA256,
        }
    }

    /// `digestPublicKeyFingerprint`: known for a local key.
    pub fn fingerprint(&self) -> Option<String> {
        match self {
            Self::Local(key) => Some(key.fingerprint.clone()),
            Self::Kms(_) => None,
        }
    }

    /// `digestSigningKeyId`: the KMS key as configured (id, ARN or alias).
    pub fn key_id(&self) -> Option<String> {
        match self {
            Self::Local(_) => None,
            Self::Kms(key) => Some(key.key_id().to_string()),
        }
    }

    /// Signs `message`.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            Self::Local(key) => key.sign(message),
            Self::Kms(key) => key.sign(message).await,
        }
    }
}

enum LocalAlgorithm {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key read from a PEM file (`--digest-key-file`).
pub struct LocalKey {
    algorithm: LocalAlgorithm,
    fingerprint: String,
}

impl LocalKey {
    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`, RSA or Ed25519, as
    /// `openssl genpkey` writes) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let error = |detail: String| KeyError::File {
            flag: "--digest-key-file",
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(&text).map_err(|_| {
            error("no PEM private key in it; make one with `openssl genpkey -algorithm ed25519 -out digest-key.pem` (or -algorithm RSA -pkeyopt rsa_keygen_bits:2048)".into())
        })?;
        let algorithm = match &key {
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map(LocalAlgorithm::Rsa)
                .map_err(|e| error(format!("not a usable RSA key: {e}")))?,
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(der) {
                    Ok(rsa) => LocalAlgorithm::Rsa(rsa),
                    Err(_) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                        .map(LocalAlgorithm::Ed25519)
                        .map_err(|_| {
                            error("neither an RSA (2048 bits or more) nor an Ed25519 key".into())
                        })?,
                }
            }
            _ => return Err(error("an EC key: use Ed25519 or RSA".into())),
        };
        let public: Result<PublicKeyX509Der<'static>, _> = match &algorithm {
            LocalAlgorithm::Rsa(key) => key.public_key().as_der(),
            LocalAlgorithm::Ed25519(key) => key.public_key().as_der(),
        };
        let public = public.map_err(|_| error("cannot encode its public key".into()))?;
        Ok(Self {
            fingerprint: sha256_hex(public.as_ref()),
            algorithm,
        })
    }

    fn algorithm(&self) -> &'static str {
        match self.algorithm {
            LocalAlgorithm::Rsa(_) => RSA_SHA256,
            LocalAlgorithm::Ed25519(_) => ED25519_NAME,
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.algorithm {
            LocalAlgorithm::Ed25519(key) => Ok(key.sign(message).as_ref().to_vec()),
            LocalAlgorithm::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(|_| SignError("RSA signing failed".into()))?;
                Ok(signature)
            }
        }
    }
}

/// The public key an auditor checks signatures with. Its kind, not the
/// digest's claim, decides the algorithm, so a forger cannot pick one.
#[derive(Debug, Clone)]
pub struct PublicKey {
    der: Vec<u8>,
    rsa: bool,
    fingerprint: String,
}

impl PublicKey {
    /// From DER SubjectPublicKeyInfo (what KMS `GetPublicKey` returns).
    pub fn from_der(der: Vec<u8>) -> Result<Self, KeyError> {
        let rsa = RsaPublicKey::from_der(&der).is_ok();
        if !rsa && !is_ed25519_spki(&der) {
            return Err(KeyError::Unsupported);
        }
        Ok(Self {
            fingerprint: sha256_hex(&der),
            der,
            rsa,
        })
    }

    /// From a PEM `PUBLIC KEY` file (`--public-key`).
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let error = |detail: String| KeyError::File {
            flag: "--public-key",
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
        let der = SubjectPublicKeyInfoDer::from_pem_slice(&text).map_err(|_| {
            error("no PEM public key in it; export one with `openssl pkey -in digest-key.pem -pubout -out digest-key.pub.pem`".into())
        })?;
        Self::from_der(der.as_ref().to_vec()).map_err(|e| error(e.to_string()))
    }

    /// Hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> &'static str {
        if self.rsa {
            RSA_SHA256
        } else {
            ED25519_NAME
        }
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = if self.rsa {
            &RSA_PKCS1_2048_8192_SHA256
        } else {
            &ED25519
        };
        UnparsedPublicKey::new(algorithm, &self.der)
            .verify(message, signature)
            .is_ok()
    }
}

/// The DER of an Ed25519 SubjectPublicKeyInfo: a fixed 12-byte header
/// (RFC 8410) and the 32-byte key.
fn is_ed25519_spki(der: &[u8]) -> bool {
    const HEADER: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.len() == 44 && der[..12] == HEADER
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, pem: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "audit-archiver-signer-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, pem).unwrap();
        path
    }

    fn public_pem(der: &[u8]) -> String {
        use aws_smithy_types::base64;
        let body = base64::encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    fn private_pem(der: &[u8]) -> String {
        public_pem(der).replace("PUBLIC KEY", "PRIVATE KEY")
    }

    #[test]
    fn an_ed25519_key_signs_and_its_public_key_verifies() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let path = write("ed.pem", &private_pem(pkcs8.as_ref()));
        let key = LocalKey::from_pem_file(&path).unwrap();
        assert_eq!(key.algorithm(), ED25519_NAME);
        let signature = key.sign(b"message").unwrap();

        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let spki: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        let public =
            PublicKey::from_pem_file(&write("ed.pub", &public_pem(spki.as_ref()))).unwrap();
        assert_eq!(public.fingerprint(), key.fingerprint);
        assert!(public.verifies(b"message", &signature));
        assert!(!public.verifies(b"messagE", &signature));
    }

    #[test]
    fn bad_files_name_the_flag_and_the_fix() {
        let path = write("junk.pem", "not a key");
        let error = LocalKey::from_pem_file(&path).unwrap_err().to_string();
        assert!(error.starts_with("--digest-key-file "), "{error}");
        assert!(error.contains("openssl genpkey"), "{error}");
        let error = PublicKey::from_pem_file(&path).unwrap_err().to_string();
        assert!(error.starts_with("--public-key "), "{error}");
        let missing = LocalKey::from_pem_file(Path::new("/nonexistent/key.pem"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot read it"), "{missing}");
        assert!(matches!(
            PublicKey::from_der(vec![1, 2, 3]),
            Err(KeyError::Unsupported)
        ));
    }
}
