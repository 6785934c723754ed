/*
 * credential.c - password hashing (Argon2id through libsodium's
 * crypto_pwhash), one-time codes (TOTP, RFC 6238 over the HOTP truncation
 * of RFC 4226, HMAC-SHA1 from GnuTLS), base32 (RFC 4648 section 6), the
 * otpauth:// URI of authenticator apps, random opaque tokens kept as
 * BLAKE2b-256 hashes, and the sealing of small secrets at rest with
 * XChaCha20-Poly1305 under a 32-byte key kept in a file.
 *
 * Not DICOM: this is the credential half of the security profiles that
 * PS3.15 leaves to the site (user identity, PS3.15 Annex A.5 audit context).
 * Secrets live on the stack only as long as a call and are wiped before it
 * returns.
 */
#include "auth/credential.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"

/* RFC 6238 as authenticator apps implement it: 6 digits, 30-second steps. */
#define TOTP_DIGITS     6
#define TOTP_MODULUS    1000000u
#define TOTP_PERIOD_S   30
#define TOTP_SECRET_BYTES 20

#define SEAL_NONCE  crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define SEAL_TAG    crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KEY_BYTES   32

static const char base32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* The hash every burn verifies against, made once (it costs one hash). */
static pthread_once_t burn_once = PTHREAD_ONCE_INIT;
static char burn_hash[crypto_pwhash_STRBYTES];
static bool burn_ready;

cp_status credential_init(void)
{
    if (sodium_init() < 0)
        return CP_ERR_UNAVAILABLE;
    return CP_OK;
}

/* --- passwords ---------------------------------------------------------------- */

/* Length within limits and at least two of: letters, digits, other characters. */
static bool password_acceptable(const char *password)
{
    size_t len = strnlen(password, CREDENTIAL_PASSWORD_MAX + 1);
    bool letter = false, digit = false, other = false;

    if (len < CREDENTIAL_PASSWORD_MIN || len > CREDENTIAL_PASSWORD_MAX)
        return false;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)password[i];

        /* Bytes of non-ASCII characters count as letters: most scripts are. */
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80)
            letter = true;
        else if (c >= '0' && c <= '9')
            digit = true;
        else
            other = true;
    }
    return (int)letter + (int)digit + (int)other >= 2;
}

cp_status credential_password_hash(const char *password, char *out, size_t cap,
                                   cp_error *err)
{
    if (password == NULL || out == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no password");
    if (cap < CREDENTIAL_HASH_SIZE)
        return cp_error_set(err, CP_ERR_LIMIT, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "hash buffer of %zu bytes is too small", cap);
    if (!password_acceptable(password))
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "a password needs %d to %d characters and two kinds of: "
                            "letters, digits, other characters", CREDENTIAL_PASSWORD_MIN,
                            CREDENTIAL_PASSWORD_MAX);

    if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the password hash could not get its memory");
    return CP_OK;
}

bool credential_password_verify(const char *hash, const char *password)
{
    char copy[crypto_pwhash_STRBYTES];
    size_t hlen, plen;
    bool ok;

    if (hash == NULL || password == NULL)
        return false;
    hlen = strnlen(hash, sizeof copy);
    plen = strnlen(password, CREDENTIAL_PASSWORD_MAX + 1);
    if (hlen == 0 || hlen >= sizeof copy || plen > CREDENTIAL_PASSWORD_MAX)
        return false;

    /* libsodium reads the hash as an array of crypto_pwhash_STRBYTES. */
    memset(copy, 0, sizeof copy);
    memcpy(copy, hash, hlen);
    ok = crypto_pwhash_str_verify(copy, password, plen) == 0;
    sodium_memzero(copy, sizeof copy);
    return ok;
}

static void burn_setup(void)
{
    char phrase[32];

    /* A random password nobody knows: the burn can never succeed. */
    randombytes_buf(phrase, sizeof phrase - 1);
    for (size_t i = 0; i + 1 < sizeof phrase; i++)
        phrase[i] = (char)('a' + (unsigned char)phrase[i] % 26);
    phrase[sizeof phrase - 1] = '\0';
    burn_ready = crypto_pwhash_str(burn_hash, phrase, strlen(phrase),
                                   crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                   crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0;
    sodium_memzero(phrase, sizeof phrase);
}

void credential_password_burn(const char *password)
{
    pthread_once(&burn_once, burn_setup);
    if (burn_ready && password != NULL)
        (void)credential_password_verify(burn_hash, password);
}

/* --- base32 (RFC 4648 section 6) --------------------------------------------- */

static cp_status base32_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t need = (len * 8 + 4) / 5 + 1, o = 0;
    unsigned acc = 0;
    int bits = 0;

    if (cap < need)
        return CP_ERR_LIMIT;
    for (size_t i = 0; i < len; i++) {
        acc = ((acc << 8) | in[i]) & 0xFFFFu;
        bits += 8;
        while (bits >= 5) {
            out[o++] = base32_alphabet[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = base32_alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
    return CP_OK;
}

static int base32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

/* Decodes case-insensitively; '=' padding is accepted at the end only. */
static cp_status base32_decode(const char *text, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strnlen(text, CRED_TOTP_SECRET_TEXT_MAX + 1), o = 0;
    unsigned acc = 0;
    int bits = 0;

    if (n > CRED_TOTP_SECRET_TEXT_MAX)
        return CP_ERR_LIMIT;
    while (n > 0 && text[n - 1] == '=')
        n--;
    if (n == 0)
        return CP_ERR_INVALID;

    for (size_t i = 0; i < n; i++) {
        int v = base32_value(text[i]);

        if (v < 0)
            return CP_ERR_INVALID;
        acc = ((acc << 5) | (unsigned)v) & 0xFFFu;
        bits += 5;
        if (bits >= 8) {
            if (o == cap)
                return CP_ERR_LIMIT;
            out[o++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    *len = o;
    return o > 0 ? CP_OK : CP_ERR_INVALID;
}

/* --- TOTP (RFC 6238, RFC 4226 section 5.3) ----------------------------------- */

cp_status credential_totp_secret(char *out, size_t cap)
{
    uint8_t raw[TOTP_SECRET_BYTES];
    cp_status st;

    if (out == NULL)
        return CP_ERR_INVALID;
    randombytes_buf(raw, sizeof raw);
    st = base32_encode(raw, sizeof raw, out, cap);
    sodium_memzero(raw, sizeof raw);
    return st;
}

/* The HOTP value of one counter, as a number below TOTP_MODULUS. */
static cp_status hotp_value(const uint8_t *key, size_t key_len, uint64_t counter,
                            uint32_t *value)
{
    uint8_t msg[8], mac[20];
    unsigned off;
    uint32_t bin;

    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)(counter & 0xFF);
        counter >>= 8;
    }
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA1, key, key_len, msg, sizeof msg, mac) != 0)
        return CP_ERR_UNAVAILABLE;

    /* Dynamic truncation: 31 bits at the offset the last nibble names. */
    off = mac[19] & 0x0F;
    bin = ((uint32_t)(mac[off] & 0x7F) << 24) | ((uint32_t)mac[off + 1] << 16) |
          ((uint32_t)mac[off + 2] << 8) | mac[off + 3];
    *value = bin % TOTP_MODULUS;
    sodium_memzero(mac, sizeof mac);
    return CP_OK;
}

static cp_status totp_key(const char *secret_base32, uint8_t *key, size_t *key_len)
{
    if (secret_base32 == NULL)
        return CP_ERR_INVALID;
    return base32_decode(secret_base32, key, CRED_TOTP_KEY_MAX, key_len);
}

cp_status credential_totp_code(const char *secret_base32, int64_t t, char *out, size_t cap)
{
    uint8_t key[CRED_TOTP_KEY_MAX];
    size_t key_len = 0;
    uint32_t value = 0;
    cp_status st;

    if (out == NULL || t < 0)
        return CP_ERR_INVALID;
    if (cap < TOTP_DIGITS + 1)
        return CP_ERR_LIMIT;

    st = totp_key(secret_base32, key, &key_len);
    if (st == CP_OK)
        st = hotp_value(key, key_len, (uint64_t)(t / TOTP_PERIOD_S), &value);
    if (st == CP_OK)
        snprintf(out, cap, "%06u", (unsigned)value);
    sodium_memzero(key, sizeof key);
    return st;
}

bool credential_totp_verify(const char *secret_base32, const char *code, int64_t t,
                            int64_t *step_out)
{
    uint8_t key[CRED_TOTP_KEY_MAX];
    size_t key_len = 0;
    int64_t step;
    bool found = false;

    if (code == NULL || t < 0 || strnlen(code, TOTP_DIGITS + 1) != TOTP_DIGITS)
        return false;
    for (int i = 0; i < TOTP_DIGITS; i++)
        if (code[i] < '0' || code[i] > '9')
            return false;
    if (totp_key(secret_base32, key, &key_len) != CP_OK)
        goto done;

    /* Every candidate is computed and compared, found or not: no early exit. */
    step = t / TOTP_PERIOD_S;
    for (int64_t s = step - 1; s <= step + 1; s++) {
        char want[TOTP_DIGITS + 1];
        uint32_t value;

        if (s < 0 || hotp_value(key, key_len, (uint64_t)s, &value) != CP_OK)
            continue;
        snprintf(want, sizeof want, "%06u", (unsigned)value);
        if (sodium_memcmp(want, code, TOTP_DIGITS) == 0 && !found) {
            found = true;
            if (step_out != NULL)
                *step_out = s;
        }
        sodium_memzero(want, sizeof want);
    }

done:
    sodium_memzero(key, sizeof key);
    return found;
}

/* Appends s percent-encoded (RFC 3986: all but the unreserved characters). */
static bool uri_append_encoded(char *out, size_t cap, size_t *o, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                     (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';

        if (*o + (plain ? 1 : 3) >= cap)
            return false;
        if (plain) {
            out[(*o)++] = (char)c;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = hex[c >> 4];
            out[(*o)++] = hex[c & 15];
        }
    }
    out[*o] = '\0';
    return true;
}

static bool uri_append(char *out, size_t cap, size_t *o, const char *s)
{
    size_t n = strlen(s);

    if (*o + n >= cap)
        return false;
    memcpy(out + *o, s, n + 1);
    *o += n;
    return true;
}

cp_status credential_totp_uri(const char *secret_base32, const char *issuer,
                              const char *account, char *out, size_t cap)
{
    uint8_t key[CRED_TOTP_KEY_MAX];
    size_t key_len = 0, o = 0;
    cp_status st;
    bool ok;

    if (secret_base32 == NULL || issuer == NULL || account == NULL || out == NULL || cap == 0)
        return CP_ERR_INVALID;
    st = totp_key(secret_base32, key, &key_len);
    sodium_memzero(key, sizeof key);
    if (st != CP_OK)
        return st;

    out[0] = '\0';
    ok = uri_append(out, cap, &o, "otpauth://totp/") &&
         uri_append_encoded(out, cap, &o, issuer) && uri_append(out, cap, &o, ":") &&
         uri_append_encoded(out, cap, &o, account) &&
         uri_append(out, cap, &o, "?secret=") && uri_append(out, cap, &o, secret_base32) &&
         uri_append(out, cap, &o, "&issuer=") && uri_append_encoded(out, cap, &o, issuer) &&
         uri_append(out, cap, &o, "&digits=6&period=30");
    if (!ok) {
        sodium_memzero(out, cap);
        return CP_ERR_LIMIT;
    }
    return CP_OK;
}

/* --- tokens -------------------------------------------------------------------- */

cp_status credential_token(const char *prefix, char *out, size_t cap)
{
    uint8_t raw[32];
    size_t plen;

    if (prefix == NULL || out == NULL)
        return CP_ERR_INVALID;
    plen = strlen(prefix);
    if (cap < plen + sodium_base64_ENCODED_LEN(sizeof raw,
                                               sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        return CP_ERR_LIMIT;

    memcpy(out, prefix, plen);
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out + plen, cap - plen, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    return CP_OK;
}

void credential_token_hash(const char *text, char out[65])
{
    uint8_t digest[32];

    crypto_generichash(digest, sizeof digest, (const unsigned char *)text,
                       text != NULL ? strlen(text) : 0, NULL, 0);
    sodium_bin2hex(out, 65, digest, sizeof digest);
}

/* --- the seal key file ----------------------------------------------------------- */

static cp_status key_io_error(cp_error *err, const char *what, const char *path)
{
    return cp_error_set(err, CP_ERR_IO, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "%s %s: %s",
                        what, path, strerror(errno));
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Makes the key file; CP_ERR_EXISTS when another process made it first. */
static cp_status key_create(const char *path, cp_error *err)
{
    uint8_t key[KEY_BYTES];
    cp_status st = CP_OK;
    int fd;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST ? CP_ERR_EXISTS : key_io_error(err, "create", path);

    randombytes_buf(key, sizeof key);
    if (!write_all(fd, key, sizeof key) || fsync(fd) != 0) {
        st = key_io_error(err, "write", path);
        unlink(path);
    }
    sodium_memzero(key, sizeof key);
    if (close(fd) != 0 && st == CP_OK)
        st = key_io_error(err, "close", path);
    return st;
}

static cp_status key_read(int fd, const char *path, uint8_t key[32], cp_error *err)
{
    struct stat sb;
    size_t got = 0;

    if (fstat(fd, &sb) != 0)
        return key_io_error(err, "stat", path);
    if (!S_ISREG(sb.st_mode) || sb.st_size != KEY_BYTES)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "seal key %s holds %lld bytes, not %d", path,
                            (long long)sb.st_size, KEY_BYTES);

    while (got < KEY_BYTES) {
        ssize_t r = read(fd, key + got, KEY_BYTES - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return key_io_error(err, "read", path);
        if (r == 0)
            return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "seal key %s ends after %zu bytes", path, got);
        got += (size_t)r;
    }
    return CP_OK;
}

cp_status credential_key_load(const char *path, uint8_t key[32], cp_error *err)
{
    cp_status st;
    int fd;

    if (path == NULL || key == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no key path");

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        st = key_create(path, err);
        if (st != CP_OK && st != CP_ERR_EXISTS)
            return st;
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return key_io_error(err, "open", path);

    st = key_read(fd, path, key, err);
    close(fd);
    if (st != CP_OK)
        sodium_memzero(key, KEY_BYTES);
    return st;
}

/* --- sealing ------------------------------------------------------------------------ */

cp_status credential_seal(const uint8_t key[32], const char *plain, char *out, size_t cap)
{
    size_t plen, blen, need;
    uint8_t *bin;
    unsigned long long clen = 0;

    if (key == NULL || plain == NULL || out == NULL)
        return CP_ERR_INVALID;
    plen = strnlen(plain, CRED_SEAL_PLAIN_MAX + 1);
    if (plen > CRED_SEAL_PLAIN_MAX)
        return CP_ERR_LIMIT;
    blen = SEAL_NONCE + plen + SEAL_TAG;
    need = sodium_base64_ENCODED_LEN(blen, sodium_base64_VARIANT_ORIGINAL);
    if (cap < need)
        return CP_ERR_LIMIT;

    bin = cp_malloc(blen);
    if (bin == NULL)
        return CP_ERR_NOMEM;
    randombytes_buf(bin, SEAL_NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt(bin + SEAL_NONCE, &clen,
                                               (const unsigned char *)plain, plen, NULL, 0,
                                               NULL, bin, key);
    sodium_bin2base64(out, cap, bin, SEAL_NONCE + (size_t)clen,
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(bin, blen);
    cp_free(bin);
    return CP_OK;
}

cp_status credential_unseal(const uint8_t key[32], const char *sealed, char *out, size_t cap)
{
    size_t slen, bmax, blen = 0;
    unsigned long long plen = 0;
    uint8_t *bin = NULL, *plain = NULL;
    cp_status st = CP_ERR_MALFORMED;

    if (key == NULL || sealed == NULL || out == NULL)
        return CP_ERR_INVALID;
    slen = strnlen(sealed, CRED_SEAL_TEXT_MAX + 1);
    if (slen > CRED_SEAL_TEXT_MAX)
        return CP_ERR_LIMIT;

    bmax = slen / 4 * 3 + 3;
    bin = cp_malloc(bmax);
    plain = cp_malloc(bmax);
    if (bin == NULL || plain == NULL) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    if (sodium_base642bin(bin, bmax, sealed, slen, NULL, &blen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        blen < SEAL_NONCE + SEAL_TAG)
        goto done;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, bin + SEAL_NONCE,
                                                   blen - SEAL_NONCE, NULL, 0, bin,
                                                   key) != 0)
        goto done;

    /* A C string was sealed: an inner NUL means it is not one of ours. */
    if (memchr(plain, '\0', (size_t)plen) != NULL)
        goto done;
    if ((size_t)plen + 1 > cap) {
        st = CP_ERR_LIMIT;
        goto done;
    }
    memcpy(out, plain, (size_t)plen);
    out[plen] = '\0';
    st = CP_OK;

done:
    if (bin != NULL) {
        sodium_memzero(bin, bmax);
        cp_free(bin);
    }
    if (plain != NULL) {
        sodium_memzero(plain, bmax);
        cp_free(plain);
    }
    return st;
}
