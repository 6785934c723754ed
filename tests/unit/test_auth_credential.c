/*
 * test_auth_credential.c - credentials: Argon2id hashing and the password
 * rules, TOTP against the SHA-1 vectors of RFC 6238 Appendix B with one
 * step of skew, base32 input forms, the otpauth URI, tokens and their
 * hashes, the seal key file, and sealing with tampering detected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/credential.h"

/* "12345678901234567890" in base32: the key of RFC 6238 Appendix B (SHA-1). */
#define RFC_SECRET "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

static int setup(void **state)
{
    (void)state;
    return credential_init() == CP_OK ? 0 : -1;
}

static void test_password_round_trip(void **state)
{
    char hash[CREDENTIAL_HASH_SIZE];

    (void)state;
    assert_int_equal(credential_password_hash("correct horse 42", hash, sizeof hash, NULL),
                     CP_OK);
    assert_memory_equal(hash, "$argon2id$", 10);
    assert_true(credential_password_verify(hash, "correct horse 42"));
    assert_false(credential_password_verify(hash, "correct horse 43"));
    assert_false(credential_password_verify(hash, ""));
    assert_false(credential_password_verify("not a hash", "correct horse 42"));
    assert_false(credential_password_verify("", "correct horse 42"));
    credential_password_burn("anything at all");
}

static void test_password_rules(void **state)
{
    char hash[CREDENTIAL_HASH_SIZE], longpw[CREDENTIAL_PASSWORD_MAX + 2];
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(credential_password_hash("short1", hash, sizeof hash, &err),
                     CP_ERR_INVALID);
    assert_int_equal(credential_password_hash("onlyletters", hash, sizeof hash, NULL),
                     CP_ERR_INVALID);
    assert_int_equal(credential_password_hash("1234567890", hash, sizeof hash, NULL),
                     CP_ERR_INVALID);
    assert_int_equal(credential_password_hash("", hash, sizeof hash, NULL), CP_ERR_INVALID);
    memset(longpw, 'a', sizeof longpw - 2);
    longpw[sizeof longpw - 2] = '1';
    longpw[sizeof longpw - 1] = '\0';
    assert_int_equal(credential_password_hash(longpw, hash, sizeof hash, NULL),
                     CP_ERR_INVALID);
    assert_int_equal(credential_password_hash("letters and spaces", hash, 10, NULL),
                     CP_ERR_LIMIT);
}

static void test_totp_rfc6238(void **state)
{
    static const struct {
        int64_t t;
        const char *code;
    } vectors[] = {
        { 59, "287082" },
        { 1111111109, "081804" },
        { 1111111111, "050471" },
        { 1234567890, "005924" },
        { 2000000000, "279037" },
        { 20000000000, "353130" },
    };
    char code[7];

    (void)state;
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        assert_int_equal(credential_totp_code(RFC_SECRET, vectors[i].t, code, sizeof code),
                         CP_OK);
        assert_string_equal(code, vectors[i].code);
    }

    /* Lower case and padding are accepted on input. */
    assert_int_equal(credential_totp_code("gezdgnbvgy3tqojqgezdgnbvgy3tqojq====", 59, code,
                                          sizeof code), CP_OK);
    assert_string_equal(code, "287082");
    assert_int_equal(credential_totp_code("GEZD!NBV", 59, code, sizeof code), CP_ERR_INVALID);
    assert_int_equal(credential_totp_code(RFC_SECRET, 59, code, 6), CP_ERR_LIMIT);
}

static void test_totp_skew(void **state)
{
    int64_t t = 1234567890, step = 0;
    char code[7];

    (void)state;
    assert_int_equal(credential_totp_code(RFC_SECRET, t, code, sizeof code), CP_OK);
    assert_true(credential_totp_verify(RFC_SECRET, code, t, &step));
    assert_int_equal(step, t / 30);

    /* One step either way is accepted; two are not. */
    assert_true(credential_totp_verify(RFC_SECRET, code, t + 30, &step));
    assert_int_equal(step, t / 30);
    assert_true(credential_totp_verify(RFC_SECRET, code, t - 30, NULL));
    assert_false(credential_totp_verify(RFC_SECRET, code, t + 60, NULL));
    assert_false(credential_totp_verify(RFC_SECRET, code, t - 60, NULL));

    assert_false(credential_totp_verify(RFC_SECRET, "12345", t, NULL));
    assert_false(credential_totp_verify(RFC_SECRET, "12345a", t, NULL));
    assert_false(credential_totp_verify(RFC_SECRET, "1234567", t, NULL));
    assert_false(credential_totp_verify("!!", code, t, NULL));
}

static void test_totp_secret_and_uri(void **state)
{
    char secret[33], uri[256], code[7];

    (void)state;
    assert_int_equal(credential_totp_secret(secret, sizeof secret), CP_OK);
    assert_int_equal(strlen(secret), 32);
    assert_int_equal(strspn(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), 32);
    assert_int_equal(credential_totp_code(secret, 1000, code, sizeof code), CP_OK);
    assert_int_equal(credential_totp_secret(secret, 32), CP_ERR_LIMIT);

    assert_int_equal(credential_totp_uri(RFC_SECRET, "Cloud PACS", "dr.li@example.org", uri,
                                         sizeof uri), CP_OK);
    assert_string_equal(uri, "otpauth://totp/Cloud%20PACS:dr.li%40example.org?secret="
                        RFC_SECRET "&issuer=Cloud%20PACS&digits=6&period=30");
    assert_int_equal(credential_totp_uri(RFC_SECRET, "x", "y", uri, 20), CP_ERR_LIMIT);
}

static void test_tokens(void **state)
{
    char a[64], b[64], h1[65], h2[65];

    (void)state;
    assert_int_equal(credential_token("cpat_", a, sizeof a), CP_OK);
    assert_int_equal(credential_token("cpat_", b, sizeof b), CP_OK);
    assert_int_equal(strlen(a), 5 + 43);
    assert_memory_equal(a, "cpat_", 5);
    assert_int_equal(strspn(a + 5, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_"), 43);
    assert_string_not_equal(a, b);
    assert_int_equal(credential_token("cpat_", a, 5 + 43), CP_ERR_LIMIT);

    credential_token_hash(b, h1);
    credential_token_hash(b, h2);
    assert_string_equal(h1, h2);
    assert_int_equal(strlen(h1), 64);
    assert_int_equal(strspn(h1, "0123456789abcdef"), 64);

    /* BLAKE2b-256 of "abc" (RFC 7693 gives the 512-bit one; this is the 256-bit). */
    credential_token_hash("abc", h1);
    assert_string_equal(h1, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
}

static void test_key_file(void **state)
{
    char dir[] = "/tmp/cloudpacs-cred-XXXXXX", path[64];
    uint8_t k1[32], k2[32];
    struct stat sb;
    cp_error err;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/secret.key", dir);

    assert_int_equal(credential_key_load(path, k1, NULL), CP_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, 32);
    assert_int_equal(credential_key_load(path, k2, NULL), CP_OK);
    assert_memory_equal(k1, k2, 32);

    /* A file of 31 bytes is not a key. */
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(k1, 1, 31, f), 31);
    fclose(f);
    cp_error_clear(&err);
    assert_int_equal(credential_key_load(path, k2, &err), CP_ERR_MALFORMED);
    assert_int_equal(err.status, CP_ERR_MALFORMED);

    snprintf(path, sizeof path, "%s/no/such/dir.key", dir);
    assert_int_equal(credential_key_load(path, k2, NULL), CP_ERR_IO);

    snprintf(path, sizeof path, "%s/secret.key", dir);
    unlink(path);
    rmdir(dir);
}

static void test_seal(void **state)
{
    uint8_t key[32], other[32];
    char sealed[256], plain[64];
    size_t n;

    (void)state;
    memset(key, 7, sizeof key);
    memset(other, 8, sizeof other);
    assert_int_equal(credential_seal(key, RFC_SECRET, sealed, sizeof sealed), CP_OK);
    assert_null(strstr(sealed, RFC_SECRET));
    assert_int_equal(credential_unseal(key, sealed, plain, sizeof plain), CP_OK);
    assert_string_equal(plain, RFC_SECRET);

    /* Each seal has its own nonce. */
    {
        char again[256];

        assert_int_equal(credential_seal(key, RFC_SECRET, again, sizeof again), CP_OK);
        assert_string_not_equal(again, sealed);
    }

    assert_int_equal(credential_unseal(other, sealed, plain, sizeof plain), CP_ERR_MALFORMED);
    assert_int_equal(credential_unseal(key, sealed, plain, 10), CP_ERR_LIMIT);
    assert_int_equal(credential_unseal(key, "not base64!", plain, sizeof plain),
                     CP_ERR_MALFORMED);
    assert_int_equal(credential_unseal(key, "AAAA", plain, sizeof plain), CP_ERR_MALFORMED);

    /* One changed character anywhere is found. */
    n = strlen(sealed);
    for (size_t i = 0; i + 2 < n; i += 7) {
        char bad[256];

        memcpy(bad, sealed, n + 1);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_int_equal(credential_unseal(key, bad, plain, sizeof plain), CP_ERR_MALFORMED);
    }
    assert_int_equal(credential_seal(key, "x", sealed, 20), CP_ERR_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_round_trip),
        cmocka_unit_test(test_password_rules),
        cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_totp_skew),
        cmocka_unit_test(test_totp_secret_and_uri),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_seal),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
