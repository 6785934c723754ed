/*
 * tls.h - DICOM over TLS, the Basic TLS Secure Transport Connection
 * Profile of PS3.15 Annex B.1 (with the BCP 195 profile of B.9 as its
 * default priorities): a GnuTLS layer that net/scp.h and net/scu.h put
 * over a connected socket through an assoc_wrap (net/assoc.h).
 *
 * A server context presents a certificate and, when a CA is configured,
 * requires and verifies the client's (mutual authentication, as IHE ATNA
 * node authentication asks). A client context verifies the server's
 * certificate against the CA given (else the system trust store) and its
 * name, and presents its own certificate when one is given.
 *
 * The module does not log: failures come back as a status and a detail.
 */
#ifndef CP_NET_TLS_H
#define CP_NET_TLS_H

#include <stdbool.h>

#include "core/status.h"
#include "net/assoc.h"

/*
 * The default priorities: TLS 1.3 and 1.2 only, with ciphers of at least
 * 128-bit strength (AEAD, forward secrecy), as BCP 195 recommends.
 */
#define TLS_PRIORITY_DEFAULT "SECURE192:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

typedef enum tls_version {
    TLS_VERSION_1_2 = 12,
    TLS_VERSION_1_3 = 13
} tls_version;

typedef struct tls_config {
    const char *cert;                   /* PEM certificate (chain); required for a server */
    const char *key;                    /* its PEM private key */
    const char *ca;                     /* PEM CAs to verify the peer by; NULL: see above */
    const char *priority;               /* GnuTLS priority string; NULL: the default */
    tls_version min_version;            /* 0: TLS 1.2 */
} tls_config;

typedef struct tls_ctx tls_ctx;

/* Loads the credentials. CP_ERR_CONFIG (with err's detail) when they are wrong. */
cp_status tls_create(const tls_config *cfg, bool server, tls_ctx **out, cp_error *err);

void tls_destroy(tls_ctx *t);

/* The wrap that runs TLS over a socket with this context (t must outlive it). */
assoc_wrap tls_wrap(tls_ctx *t);

/* Parses "1.2" or "1.3" (also "TLS1.2", "tlsv1.3"). */
cp_status tls_parse_version(const char *text, tls_version *out);

#endif
