/*
 * accept.h - content negotiation as DICOMweb clients do it (PS3.18 8.7,
 * RFC 9110 12.5.1), header parameters (RFC 9110 5.6.6), and the base URL a
 * client sees through a reverse proxy (RFC 7239, X-Forwarded-*).
 *
 * The Accept reader is lenient, because viewers and their image loaders send
 * what they send: type="application/dicom" quoted or not, transfer-syntax
 * repeated or "*", q-values anywhere among the parameters, elements it
 * cannot make sense of skipped. Each (media range, transfer syntax) pair
 * becomes one item; items are ordered by q-value, then by position.
 */
#ifndef CP_HTTP_ACCEPT_H
#define CP_HTTP_ACCEPT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/limits.h"
#include "core/status.h"

/* Bytes of a media type kept (lower-cased), NUL included. */
#define HTTP_MEDIA_MAX 80
/* Bytes of a transfer syntax UID (64) or "*", NUL included. */
#define HTTP_TS_MAX    65

typedef struct http_accept_item {
    char media[HTTP_MEDIA_MAX];         /* "multipart/related", or a range with "*" */
    char type[HTTP_MEDIA_MAX];          /* the type= parameter, or "" */
    char transfer_syntax[HTTP_TS_MAX];  /* a UID, "*", or "" when not given */
    int q;                              /* quality in thousandths, 0..1000 */
} http_accept_item;

typedef struct http_accept {
    http_accept_item items[HTTP_ACCEPT_ITEMS_MAX];
    size_t count;
    bool truncated;                     /* more than HTTP_ACCEPT_ITEMS_MAX items */
} http_accept;

/*
 * Reads an Accept header (NULL or empty: no items). Elements that are not
 * media ranges are skipped. CP_ERR_MALFORMED when a non-empty header held
 * no usable element (out is then empty, which http_accept_choose reads as
 * "anything").
 */
cp_status http_accept_parse(const char *header, http_accept *out);

/* What a handler can answer. */
typedef struct http_offer {
    const char *media;              /* "application/dicom+json", "multipart/related" */
    const char *type;               /* multipart/related's type=, else NULL */
    const char *transfer_syntax;    /* UID produced, or NULL: whatever is asked */
} http_offer;

/*
 * Index of the offer to answer with, or -1 (answer 406). For each offer the
 * most specific matching item gives its q; the highest q wins and ties go to
 * the earlier offer. An empty accept takes the first offer. *matched (may be
 * NULL) receives the item that decided, or NULL when accept was empty; its
 * transfer_syntax tells a wildcard offer what to produce.
 */
int http_accept_choose(const http_accept *accept, const http_offer *offers, size_t n,
                       const http_accept_item **matched);

/*
 * A parameter of the first element of a header value such as a
 * Content-Type ("multipart/related; type=\"application/dicom\"; boundary=x"),
 * unquoted into out. CP_ERR_NOT_FOUND when absent, CP_ERR_LIMIT when longer
 * than cap - 1.
 */
cp_status http_header_param(const char *value, const char *name, char *out, size_t cap);

/*
 * True when the media type of a header value (before any ';') is `type`,
 * case-insensitively.
 */
bool http_media_type_is(const char *value, const char *type);

/* The headers that tell where a client thinks it is. */
typedef struct http_forward_info {
    const char *forwarded;          /* Forwarded (RFC 7239), or NULL */
    const char *x_forwarded_proto;
    const char *x_forwarded_host;
    const char *x_forwarded_port;
    const char *x_forwarded_prefix;
    const char *host;               /* Host */
    bool tls;                       /* the connection itself is HTTPS */
    bool trust_proxy;               /* false: Forwarded and X-Forwarded-* ignored */
} http_forward_info;

/*
 * The absolute base URL ("https://pacs.example.org/prefix", no trailing
 * slash) for building BulkDataURIs and Location headers. Forwarded's first
 * element wins over X-Forwarded-*, which win over Host; values that are not
 * a plausible scheme, host or path are ignored. CP_ERR_LIMIT when it does
 * not fit in cap.
 */
cp_status http_base_url(const http_forward_info *in, char *out, size_t cap);

#endif
