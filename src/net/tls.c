/*
 * tls.c - the TLS secure transport connection profile of PS3.15 Annex B.1
 * over GnuTLS: credentials loaded once per context, one GnuTLS session
 * per connection, and an assoc_transport that reads and writes records
 * with the timeouts the upper layer state machine asks for (PS3.8 9.1.5).
 *
 * The handshake runs on the association's own thread and is bounded by
 * the timeout the caller gives (ARTIM on the server), so a peer that
 * stalls or speaks plain DICOM to the TLS port costs one thread for at
 * most that long and nobody else anything.
 */
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "core/alloc.h"
#include "core/limits.h"

struct tls_ctx {
    bool server;
    bool verify;                        /* the peer's certificate must verify */
    gnutls_certificate_credentials_t cred;
    gnutls_priority_t prio;
};

/* One connection: what the assoc_transport's ctx points to. */
typedef struct tls_conn {
    gnutls_session_t session;
    int fd;
    bool shut;
} tls_conn;

static cp_status config_fail(cp_error *err, const char *what, const char *arg, int rc)
{
    return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                        "TLS %s \"%s\": %s", what, arg != NULL ? arg : "",
                        gnutls_strerror(rc));
}

cp_status tls_parse_version(const char *text, tls_version *out)
{
    const char *p = text;

    if (strncasecmp(p, "tlsv", 4) == 0)
        p += 4;
    else if (strncasecmp(p, "tls", 3) == 0)
        p += 3;
    if (strcmp(p, "1.2") == 0)
        *out = TLS_VERSION_1_2;
    else if (strcmp(p, "1.3") == 0)
        *out = TLS_VERSION_1_3;
    else
        return CP_ERR_CONFIG;
    return CP_OK;
}

/* The priority string with the versions below the minimum removed. */
static cp_status load_priority(tls_ctx *t, const tls_config *cfg, cp_error *err)
{
    char prio[TLS_PRIORITY_MAX];
    const char *base = cfg->priority != NULL && cfg->priority[0] != '\0'
                           ? cfg->priority : TLS_PRIORITY_DEFAULT;
    const char *err_pos = NULL;
    int n, rc;

    n = snprintf(prio, sizeof prio, "%s:-VERS-TLS1.0:-VERS-TLS1.1%s", base,
                 cfg->min_version == TLS_VERSION_1_3 ? ":-VERS-TLS1.2" : "");
    if (n < 0 || (size_t)n >= sizeof prio)
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "TLS priority string too long");
    rc = gnutls_priority_init(&t->prio, prio, &err_pos);
    if (rc < 0)
        return config_fail(err, "priority", err_pos != NULL ? err_pos : base, rc);
    return CP_OK;
}

static cp_status load_credentials(tls_ctx *t, const tls_config *cfg, cp_error *err)
{
    int rc = gnutls_certificate_allocate_credentials(&t->cred);

    if (rc < 0)
        return CP_ERR_NOMEM;
    if (cfg->cert != NULL && cfg->cert[0] != '\0') {
        rc = gnutls_certificate_set_x509_key_file(t->cred, cfg->cert,
                                                  cfg->key != NULL ? cfg->key : cfg->cert,
                                                  GNUTLS_X509_FMT_PEM);
        if (rc < 0)
            return config_fail(err, "certificate or key", cfg->cert, rc);
    } else if (t->server) {
        return cp_error_set(err, CP_ERR_CONFIG, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "TLS server without a certificate (tls_cert)");
    }

    if (cfg->ca != NULL && cfg->ca[0] != '\0') {
        rc = gnutls_certificate_set_x509_trust_file(t->cred, cfg->ca, GNUTLS_X509_FMT_PEM);
        if (rc <= 0)
            return config_fail(err, "CA file", cfg->ca,
                               rc == 0 ? GNUTLS_E_NO_CERTIFICATE_FOUND : rc);
        t->verify = true;
    } else if (!t->server) {
        /* A client without a CA trusts what the system trusts. */
        rc = gnutls_certificate_set_x509_system_trust(t->cred);
        t->verify = true;
        if (rc < 0)
            return config_fail(err, "system trust store", "", rc);
    }
    return CP_OK;
}

cp_status tls_create(const tls_config *cfg, bool server, tls_ctx **out, cp_error *err)
{
    tls_ctx *t;
    cp_status st;

    *out = NULL;
    t = cp_calloc(1, sizeof *t);
    if (t == NULL)
        return CP_ERR_NOMEM;
    t->server = server;
    st = load_credentials(t, cfg, err);
    if (st == CP_OK)
        st = load_priority(t, cfg, err);
    if (st != CP_OK) {
        tls_destroy(t);
        return st;
    }
    *out = t;
    return CP_OK;
}

void tls_destroy(tls_ctx *t)
{
    if (t == NULL)
        return;
    if (t->prio != NULL)
        gnutls_priority_deinit(t->prio);
    if (t->cred != NULL)
        gnutls_certificate_free_credentials(t->cred);
    cp_free(t);
}

/* --- the transport ------------------------------------------------------ */

static cp_status conn_read(void *ctx, void *buf, size_t len, size_t *got, int timeout_ms)
{
    tls_conn *c = ctx;
    ssize_t n;

    *got = 0;
    gnutls_record_set_timeout(c->session, timeout_ms < 0 ? GNUTLS_INDEFINITE_TIMEOUT
                                                         : (unsigned)timeout_ms);
    do {
        n = gnutls_record_recv(c->session, buf, len);
    } while (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN);
    if (n == GNUTLS_E_TIMEDOUT)
        return CP_ERR_AGAIN;
    /* A peer that closes without close_notify has still closed. */
    if (n == GNUTLS_E_PREMATURE_TERMINATION)
        return CP_OK;
    if (n < 0)
        return CP_ERR_IO;
    *got = (size_t)n;
    return CP_OK;
}

static void set_send_timeout(int fd, int timeout_ms)
{
    struct timeval tv = { 0, 0 };

    if (timeout_ms > 0) {
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static cp_status conn_write(void *ctx, const void *data, size_t len, int timeout_ms)
{
    tls_conn *c = ctx;
    const uint8_t *p = data;

    set_send_timeout(c->fd, timeout_ms);
    while (len > 0) {
        ssize_t n = gnutls_record_send(c->session, p, len);

        if (n == GNUTLS_E_INTERRUPTED)
            continue;
        /* The send timeout passed: the record is half written, so give up. */
        if (n == GNUTLS_E_AGAIN)
            return CP_ERR_AGAIN;
        if (n < 0)
            return CP_ERR_IO;
        p += n;
        len -= (size_t)n;
    }
    return CP_OK;
}

static void conn_shutdown(void *ctx)
{
    tls_conn *c = ctx;

    if (c->shut)
        return;
    c->shut = true;
    /* close_notify, not waiting for the peer's (PS3.15 B.1 leaves it to TLS). */
    set_send_timeout(c->fd, 1000);
    gnutls_bye(c->session, GNUTLS_SHUT_WR);
    shutdown(c->fd, SHUT_RDWR);
}

static const assoc_transport tls_transport = { conn_read, conn_write, conn_shutdown };

static void conn_close(void *tp_ctx)
{
    tls_conn *c = tp_ctx;

    if (c == NULL)
        return;
    gnutls_deinit(c->session);
    cp_free(c);
}

/* Why a handshake failed, with the verification result when that was it. */
static void handshake_detail(tls_conn *c, int rc, char *detail, size_t size)
{
    unsigned status;
    gnutls_datum_t out = { NULL, 0 };

    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        status = gnutls_session_get_verify_cert_status(c->session);
        if (gnutls_certificate_verification_status_print(
                status, gnutls_certificate_type_get(c->session), &out, 0) == 0) {
            snprintf(detail, size, "certificate rejected: %s", (const char *)out.data);
            gnutls_free(out.data);
            return;
        }
    }
    snprintf(detail, size, "handshake failed: %s", gnutls_strerror(rc));
}

static cp_status conn_handshake(tls_conn *c, int timeout_ms, char *detail, size_t size)
{
    int rc;

    gnutls_handshake_set_timeout(c->session, timeout_ms > 0 ? (unsigned)timeout_ms
                                                            : GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
    do {
        rc = gnutls_handshake(c->session);
    } while (rc < 0 && gnutls_error_is_fatal(rc) == 0);
    if (rc < 0) {
        handshake_detail(c, rc, detail, size);
        return CP_ERR_IO;
    }
    return CP_OK;
}

/* Server Name Indication carries names only (RFC 6066 section 3). */
static bool is_address(const char *host)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static cp_status wrap_open(void *ctx, int fd, const char *peer_host, int timeout_ms,
                           const assoc_transport **tp, void **tp_ctx, char *detail,
                           size_t detail_size)
{
    tls_ctx *t = ctx;
    tls_conn *c = cp_calloc(1, sizeof *c);
    int rc;

    if (c == NULL) {
        snprintf(detail, detail_size, "out of memory");
        return CP_ERR_NOMEM;
    }
    c->fd = fd;
    /* NO_SIGNAL: a peer that hangs up must not kill a client with SIGPIPE. */
    rc = gnutls_init(&c->session,
                     (t->server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_SIGNAL);
    if (rc < 0) {
        cp_free(c);
        snprintf(detail, detail_size, "gnutls_init: %s", gnutls_strerror(rc));
        return CP_ERR_NOMEM;
    }
    rc = gnutls_priority_set(c->session, t->prio);
    if (rc >= 0)
        rc = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, t->cred);
    if (rc < 0) {
        snprintf(detail, detail_size, "session setup: %s", gnutls_strerror(rc));
        goto fail;
    }
    if (t->server && t->verify)
        gnutls_certificate_server_set_request(c->session, GNUTLS_CERT_REQUIRE);
    if (!t->server && peer_host != NULL && !is_address(peer_host))
        gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, peer_host, strlen(peer_host));
    if (t->verify)
        gnutls_session_set_verify_cert(c->session, t->server ? NULL : peer_host, 0);
    gnutls_transport_set_int(c->session, fd);

    if (conn_handshake(c, timeout_ms, detail, detail_size) != CP_OK)
        goto fail;
    *tp = &tls_transport;
    *tp_ctx = c;
    return CP_OK;

fail:
    conn_close(c);
    return CP_ERR_IO;
}

static bool conn_pending(void *tp_ctx)
{
    tls_conn *c = tp_ctx;

    return gnutls_record_check_pending(c->session) > 0;
}

assoc_wrap tls_wrap(tls_ctx *t)
{
    assoc_wrap w = { wrap_open, conn_close, conn_pending, t };

    return w;
}
