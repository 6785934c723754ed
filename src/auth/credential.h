/*
 * credential.h - the secrets people and machines prove themselves with:
 * passwords hashed with Argon2id (libsodium's crypto_pwhash, interactive
 * limits by default), one-time codes as authenticator apps make them (TOTP,
 * RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, a step of clock skew
 * either way), random opaque tokens, and sealing of small secrets at rest
 * (XChaCha20-Poly1305 with a key kept in a file of the data directory).
 *
 * Nothing here logs, and nothing keeps a secret longer than the call:
 * buffers that held one are wiped (sodium_memzero) before they are freed.
 */
#ifndef CP_AUTH_CREDENTIAL_H
#define CP_AUTH_CREDENTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Size of an Argon2id hash string, with its NUL (crypto_pwhash_STRBYTES). */
#define CREDENTIAL_HASH_SIZE 128

/* Passwords shorter than this are refused (CP_ERR_INVALID). */
#define CREDENTIAL_PASSWORD_MIN 8
#define CREDENTIAL_PASSWORD_MAX 256

/* Must be called once before anything else here (sodium_init); idempotent. */
cp_status credential_init(void);

/*
 * Hashes a password into out (CREDENTIAL_HASH_SIZE bytes). CP_ERR_INVALID
 * for a password outside the length limits or one without at least two of:
 * letters, digits, other characters.
 */
cp_status credential_password_hash(const char *password, char *out, size_t cap,
                                   cp_error *err);

/* Whether password matches hash; false for a malformed hash. Constant-time. */
bool credential_password_verify(const char *hash, const char *password);

/* A dummy verify with the same cost, for unknown usernames (no timing oracle). */
void credential_password_burn(const char *password);

/* A new TOTP secret: 20 random bytes as base32 (32 characters + NUL). */
cp_status credential_totp_secret(char *out, size_t cap);

/* The code for time t (seconds since 1970) into out (7 bytes). */
cp_status credential_totp_code(const char *secret_base32, int64_t t, char *out, size_t cap);

/*
 * Whether code is right for time t, within one step either way. *step_out
 * (may be NULL) gets the matching time step, so that a caller can refuse a
 * code used twice.
 */
bool credential_totp_verify(const char *secret_base32, const char *code, int64_t t,
                            int64_t *step_out);

/*
 * The otpauth:// URI an authenticator app scans:
 * otpauth://totp/<issuer>:<account>?secret=...&issuer=<issuer>&digits=6&period=30
 */
cp_status credential_totp_uri(const char *secret_base32, const char *issuer,
                              const char *account, char *out, size_t cap);

/*
 * A random opaque token: `prefix` then 32 random bytes as unpadded
 * base64url (43 characters). cap must hold strlen(prefix) + 44.
 */
cp_status credential_token(const char *prefix, char *out, size_t cap);

/* BLAKE2b-256 of text as 64 lowercase hex characters + NUL: how tokens are kept. */
void credential_token_hash(const char *text, char out[65]);

/*
 * Loads the 32-byte seal key from path, creating it (mode 0600, random)
 * when absent. CP_ERR_IO when it cannot be read or written; CP_ERR_MALFORMED
 * when the file is not 32 bytes.
 */
cp_status credential_key_load(const char *path, uint8_t key[32], cp_error *err);

/* Seals plain text to base64 text (nonce + ciphertext) into out. */
cp_status credential_seal(const uint8_t key[32], const char *plain, char *out, size_t cap);

/* Opens what credential_seal made; CP_ERR_MALFORMED when forged or damaged. */
cp_status credential_unseal(const uint8_t key[32], const char *sealed, char *out, size_t cap);

#endif
