//! RSA key pairs of nodes: generation, PEM files, fingerprints, and the
//! private-key operations of the join handshake (RSA-PSS signatures and
//! RSA-OAEP decryption, both with SHA-256).
//!
//! Private keys are PKCS#8 PEM files with mode 0600, public keys
//! SubjectPublicKeyInfo PEM files. Private-key operations must stay in the
//! join handshake: see the RUSTSEC-2023-0071 note in `docs/SECURITY.md`.

use std::fmt;
use std::path::{Path, PathBuf};

use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::sha2::Sha256;
use rsa::{PrivateKey, PublicKey};
use sha2::Digest;
use zeroize::Zeroizing;

use super::Secret;

/// RSA modulus size of generated keys unless configured.
pub const DEFAULT_KEY_BITS: usize = 3072;
/// Smallest modulus accepted for generated keys.
pub const MIN_KEY_BITS: usize = 2048;
/// Largest modulus the `rsa` crate accepts.
pub const MAX_KEY_BITS: usize = 8192;
/// File name of a node's private key in its data directory.
pub const PRIVATE_KEY_FILE: &str = "node-key.pem";
/// File name of a node's public key in its data directory.
pub const PUBLIC_KEY_FILE: &str = "node-key.pub.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("failed to read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid {kind} PEM file: {message}")]
    Pem {
        path: PathBuf,
        kind: &'static str,
        message: String,
    },
    #[error("invalid public key: {0}")]
    PublicKey(String),
    #[error("key size {bits} is out of range: use {MIN_KEY_BITS} to {MAX_KEY_BITS} bits")]
    Bits { bits: usize },
    #[error("{path} already exists: remove it or choose another directory")]
    Exists { path: PathBuf },
    #[error("the public key {public} does not belong to the private key {private}")]
    Mismatch { public: PathBuf, private: PathBuf },
    #[error("RSA key generation failed: {0}")]
    Generate(String),
    #[error("RSA operation failed: {0}")]
    Rsa(#[from] rsa::Error),
    #[error("failed to encode the key: {0}")]
    Encode(String),
}

/// A node's RSA key pair. `Debug` shows the public key fingerprint only.
pub struct KeyPair {
    private: Secret<PrivateKey>,
    public: PublicKey,
    fingerprint: String,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("fingerprint", &self.fingerprint)
            .field("private", &self.private)
            .finish()
    }
}

impl KeyPair {
    /// Generates a key pair with a modulus of `bits` bits (public exponent
    /// 65537) from the operating system's random generator.
    pub fn generate(bits: usize) -> Result<KeyPair, KeyError> {
        check_bits(bits)?;
        let private = PrivateKey::new(&mut getrandom::SysRng, bits)
            .map_err(|error| KeyError::Generate(error.to_string()))?;
        Ok(KeyPair::from_private(private))
    }

    pub fn from_private(private: PrivateKey) -> KeyPair {
        let public = private.to_public_key();
        let fingerprint = fingerprint(&public);
        KeyPair {
            private: Secret::new(private),
            public,
            fingerprint,
        }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// `SHA256:` and the lowercase hex SHA-256 of the public key's DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Signs `message` with RSA-PSS and SHA-256 (salt as long as the digest).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(self.private.expose().pss_sign::<Sha256>(message)?)
    }

    /// Decrypts an RSA-OAEP (SHA-256) ciphertext, with blinding.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let plaintext = self.private.expose().oaep_decrypt::<Sha256>(ciphertext)?;
        Ok(Zeroizing::new(plaintext))
    }

    /// Writes the pair into `dir` as [`PRIVATE_KEY_FILE`] (mode 0600) and
    /// [`PUBLIC_KEY_FILE`] (mode 0644). Never overwrites an existing file.
    pub fn write_to(&self, dir: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        let private_path = dir.join(PRIVATE_KEY_FILE);
        let public_path = dir.join(PUBLIC_KEY_FILE);
        for path in [&private_path, &public_path] {
            if path.exists() {
                return Err(KeyError::Exists { path: path.clone() });
            }
        }
        let private_pem = self
            .private
            .expose()
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| KeyError::Encode(error.to_string()))?;
        write_new_file(&private_path, private_pem.as_bytes(), 0o600)?;
        write_new_file(&public_path, public_pem(&self.public).as_bytes(), 0o644)?;
        Ok((private_path, public_path))
    }
}

fn check_bits(bits: usize) -> Result<(), KeyError> {
    if (MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(KeyError::Bits { bits })
    }
}

/// `SHA256:` followed by the lowercase hex SHA-256 of the key's DER
/// (SubjectPublicKeyInfo), the form the API and the logs show.
pub fn fingerprint(public: &PublicKey) -> String {
    let der = public_der(public);
    let digest = sha2::Sha256::digest(&der);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("SHA256:{hex}")
}

/// Encodes the key as SubjectPublicKeyInfo DER.
pub fn public_der(public: &PublicKey) -> Vec<u8> {
    // Encoding a valid RSA public key into SubjectPublicKeyInfo cannot fail:
    // it writes two integers into a fixed ASN.1 structure.
    public
        .to_public_key_der()
        .expect("an RSA public key always encodes")
        .into_vec()
}

/// Encodes the key as SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY").
pub fn public_pem(public: &PublicKey) -> String {
    // PEM is the base64 of the DER, which always encodes (see `public_der`).
    public
        .to_public_key_pem(LineEnding::LF)
        .expect("an RSA public key always encodes")
}

/// Parses a SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY").
pub fn parse_public_pem(text: &str) -> Result<PublicKey, KeyError> {
    PublicKey::from_public_key_pem(text.trim())
        .map_err(|error| KeyError::PublicKey(error.to_string()))
}

/// Parses a SubjectPublicKeyInfo DER.
pub fn parse_public_der(der: &[u8]) -> Result<PublicKey, KeyError> {
    PublicKey::from_public_key_der(der).map_err(|error| KeyError::PublicKey(error.to_string()))
}

/// Verifies an RSA-PSS (SHA-256) signature of `message`.
pub fn verify(public: &PublicKey, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
    Ok(public.pss_verify::<Sha256>(message, signature)?)
}

/// Encrypts `plaintext` with RSA-OAEP (SHA-256).
pub fn encrypt(public: &PublicKey, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
    Ok(public.oaep_encrypt::<Sha256>(plaintext)?)
}

/// Reads a PKCS#8 PEM private key file.
pub fn read_private(path: &Path) -> Result<KeyPair, KeyError> {
    let text = Zeroizing::new(read_file(path)?);
    let private = PrivateKey::from_pkcs8_pem(text.trim()).map_err(|error| KeyError::Pem {
        path: path.to_path_buf(),
        kind: "PKCS#8 private key",
        message: error.to_string(),
    })?;
    Ok(KeyPair::from_private(private))
}

/// Reads a SubjectPublicKeyInfo PEM public key file.
pub fn read_public(path: &Path) -> Result<PublicKey, KeyError> {
    let text = read_file(path)?;
    PublicKey::from_public_key_pem(text.trim()).map_err(|error| KeyError::Pem {
        path: path.to_path_buf(),
        kind: "public key",
        message: error.to_string(),
    })
}

/// Source of a node's key pair.
#[derive(Clone, Debug)]
pub struct KeySettings {
    /// PKCS#8 PEM private key file. `None` uses (or generates)
    /// [`PRIVATE_KEY_FILE`] in the data directory.
    pub private_key: Option<PathBuf>,
    /// Modulus size of a generated key.
    pub bits: usize,
}

impl Default for KeySettings {
    fn default() -> KeySettings {
        KeySettings {
            private_key: None,
            bits: DEFAULT_KEY_BITS,
        }
    }
}

/// Loads the node's key pair: the configured private key, else the one in
/// `data_dir`, generating it there on first start. Logs the path and the
/// public key fingerprint.
pub fn load_or_generate(data_dir: &Path, settings: &KeySettings) -> Result<KeyPair, KeyError> {
    if let Some(path) = &settings.private_key {
        let keys = read_private(path)?;
        tracing::info!(key.path = %path.display(), key.fingerprint = %keys.fingerprint(), "security.key_loaded");
        return Ok(keys);
    }
    let private_path = data_dir.join(PRIVATE_KEY_FILE);
    if private_path.exists() {
        let keys = read_private(&private_path)?;
        tracing::info!(key.path = %private_path.display(), key.fingerprint = %keys.fingerprint(), "security.key_loaded");
        return Ok(keys);
    }

    check_bits(settings.bits)?;
    tracing::info!(key.bits = settings.bits, "security.generating_key");
    let keys = KeyPair::generate(settings.bits)?;
    std::fs::create_dir_all(data_dir).map_err(|source| KeyError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let (private_path, public_path) = keys.write_to(data_dir)?;
    tracing::info!(
        key.path = %private_path.display(),
        public_key.path = %public_path.display(),
        key.fingerprint = %keys.fingerprint(),
        "security.key_generated"
    );
    Ok(keys)
}

/// Checks that the public key file at `path` belongs to `keys`.
pub fn check_public_matches(path: &Path, keys: &KeyPair, private: &Path) -> Result<(), KeyError> {
    if read_public(path)? == *keys.public_key() {
        Ok(())
    } else {
        Err(KeyError::Mismatch {
            public: path.to_path_buf(),
            private: private.to_path_buf(),
        })
    }
}

fn read_file(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let io_error = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_pair() -> KeyPair {
        KeyPair::generate(MIN_KEY_BITS).unwrap()
    }

    #[test]
    fn files_round_trip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let keys = small_pair();
        let (private_path, public_path) = keys.write_to(dir.path()).unwrap();
        let mode = std::fs::metadata(&private_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let loaded = read_private(&private_path).unwrap();
        assert_eq!(loaded.fingerprint(), keys.fingerprint());
        assert_eq!(read_public(&public_path).unwrap(), *keys.public_key());
        assert!(matches!(
            keys.write_to(dir.path()),
            Err(KeyError::Exists { .. })
        ));
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        let keys = small_pair();
        let expected = sha2::Sha256::digest(public_der(keys.public_key()));
        let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(keys.fingerprint(), format!("SHA256:{hex}"));
        let pem = public_pem(keys.public_key());
        assert_eq!(
            fingerprint(&parse_public_pem(&pem).unwrap()),
            keys.fingerprint()
        );
    }

    #[test]
    fn signature_and_encryption_round_trip() {
        let keys = small_pair();
        let signature = keys.sign(b"transcript").unwrap();
        assert!(verify(keys.public_key(), b"transcript", &signature).is_ok());
        assert!(verify(keys.public_key(), b"transcripT", &signature).is_err());

        let ciphertext = encrypt(keys.public_key(), &[7; 32]).unwrap();
        assert_eq!(keys.decrypt(&ciphertext).unwrap().as_slice(), &[7; 32]);
    }

    #[test]
    fn debug_output_hides_private_key() {
        let keys = small_pair();
        let text = format!("{keys:?}");
        assert!(text.contains(keys.fingerprint()), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn key_size_out_of_range_is_rejected() {
        assert!(matches!(
            KeyPair::generate(1024),
            Err(KeyError::Bits { bits: 1024 })
        ));
    }
}
