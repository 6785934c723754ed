/*
 * static.h - static files under a path prefix of an http_server: the OHIF
 * viewer's prebuilt build at /viewer/ (installed by scripts/viewer.sh),
 * beside DICOMweb (PS3.18). Files go out with sendfile and a content type
 * from their extension; a path without a file (a client-side route of a
 * single-page application) gets the fallback page; the responses carry the
 * cross-origin isolation headers (COOP/COEP) the viewer's codecs need.
 */
#ifndef CP_HTTP_STATIC_H
#define CP_HTTP_STATIC_H

#include <stddef.h>

#include "core/status.h"
#include "http/http.h"

typedef struct http_static_config {
    const char *prefix;     /* "/viewer": serves "/viewer", "/viewer/" and below;
                             * "/" (added): every path no earlier route took */
    const char *root;       /* the directory; NULL: not installed, 404 with `missing` */
    const char *fallback;   /* file for paths without one ("index.html"); NULL: 404 */
    const char *missing;    /* the 404 message when root is NULL */
} http_static_config;

typedef struct http_static http_static;

/*
 * Registers GET (and HEAD) <prefix>/ * on srv, public (no auth hook: the
 * files hold no patient data) and isolated (COOP/COEP). cfg is copied. The
 * result must outlive the server's last request: destroy it after
 * http_server_stop.
 */
cp_status http_static_register(http_server *srv, const http_static_config *cfg,
                               http_static **out, cp_error *err);

void http_static_destroy(http_static *st);

/*
 * Finds the directory `rel` (e.g. "web/viewer") that holds `marker` (e.g.
 * "index.html"): relative to the working directory first, then to each of
 * the HTTP_STATIC_SEARCH_UP directories above the running binary. Writes
 * its absolute path to out; CP_ERR_NOT_FOUND when there is none.
 */
cp_status http_static_locate(const char *rel, const char *marker, char *out, size_t cap);

#endif
