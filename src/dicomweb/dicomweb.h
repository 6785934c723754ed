/*
 * dicomweb.h - the DICOMweb service (PS3.18 section 10) under /dicom-web:
 * QIDO-RS searches (10.6, qido.h), WADO-RS retrieval of instances,
 * metadata, bulk data and frames (10.4, wado.h) and STOW-RS storage
 * (10.5, stow.h), as routes of an http_server.
 *
 * The service holds no state of its own besides the archive, index and
 * store it is given, which the caller keeps open longer than the server
 * runs. The helpers below are shared by the three transaction files.
 */
#ifndef CP_DICOMWEB_H
#define CP_DICOMWEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "archive/archive.h"
#include "auth/audit.h"
#include "auth/policy.h"
#include "core/buf.h"
#include "core/status.h"
#include "dicom/io.h"
#include "http/http.h"
#include "index/index.h"
#include "store/store.h"

/* The path prefix of every DICOMweb route. */
#define DWEB_PREFIX "/dicom-web"

/* Media types of PS3.18 8.7.3. */
#define DWEB_DICOM_JSON "application/dicom+json"

typedef struct dweb_config {
    archive *arc;       /* STOW-RS goes through its ingest pipeline */
    index_db *idx;      /* searches, and where WADO-RS finds the instances */
    store *st;          /* the blobs WADO-RS streams */
    /*
     * Added: who asks. Every route then needs the principal that
     * api_authenticate attaches, answers only what the policy lets it see
     * and writes the audit trail through api_audit. NULL: no identity at
     * all (unit tests), every study visible and nothing audited.
     */
    api_service *api;
    /*
     * Added: reading orders (cli/serve_consult.c). For a study with an open
     * reading order, what the order says of p: DWEB_ORDER_OPENS (p holds
     * it, is offered it or may take it, or reviews it: the study is
     * visible even without a contract), DWEB_ORDER_CLOSES (p has no part in
     * it: a doctor who would see the study only through a contract does
     * not while another reads it) or DWEB_ORDER_NONE (no open order: the
     * policy alone decides). NULL: the policy alone.
     */
    int (*order_gate)(void *ctx, const principal *p, const char *study_uid);
    void *order_gate_ctx;
    /*
     * Added: the studies p's open orders open to it (held, offered, under
     * its review), at most cap copied to uids; how many. QIDO-RS searches
     * them beside the policy's institutions, so that a search finds what a
     * retrieval would show. NULL: none. Called with order_gate_ctx.
     */
    size_t (*order_studies)(void *ctx, const principal *p, char (*uids)[INDEX_UID_MAX + 1],
                            size_t cap);
} dweb_config;

/* What dweb_config.order_gate answers. */
enum {
    DWEB_ORDER_CLOSES = -1,
    DWEB_ORDER_NONE = 0,
    DWEB_ORDER_OPENS = 1,
};

typedef struct dweb_service dweb_service;

/*
 * Creates the service and registers its routes on srv (before
 * http_server_start). The service must outlive the server's last request:
 * destroy it after http_server_stop.
 */
cp_status dweb_register(http_server *srv, const dweb_config *cfg, dweb_service **out,
                        cp_error *err);

void dweb_destroy(dweb_service *svc);

/* The configuration the service was created with. */
const dweb_config *dweb_service_config(const dweb_service *svc);

/* --- shared by the transaction files ------------------------------------ */

/* Appends s as a JSON string literal (quoted, escaped). */
cp_status dweb_json_string(cp_buf *out, const char *s);

/* Appends len bytes of s as a JSON string literal. */
cp_status dweb_json_string_n(cp_buf *out, const char *s, size_t len);

/*
 * The service root the client sees ("http://host:port/dicom-web"), built
 * with the proxy-aware base URL of http.h. CP_ERR_LIMIT when it does not fit.
 */
cp_status dweb_root_url(const http_request *req, char *out, size_t cap);

/*
 * The metadata cache: whole metadata answers kept in memory by their ETag
 * (which changes whenever an instance of the study or series does), at
 * most DWEB_METADATA_CACHE_MAX bytes, the least recently used dropped
 * first. get copies the answer into out (CP_ERR_NOT_FOUND when absent);
 * put takes data, allocated with cp_malloc, whatever happens. Rendered
 * pictures (render.h) share it, under ETags of their own ("r...").
 */
cp_status dweb_cache_get(dweb_service *svc, const char *etag, cp_buf *out);
void dweb_cache_put(dweb_service *svc, const char *etag, uint8_t *data, size_t len);

/* Whether s is a plausible UID (PS3.5 9.1): digits and dots, 1 to 64 bytes. */
bool dweb_uid_is_valid(const char *s);

/* --- who asks (added) ------------------------------------------------------ */

/* How dweb_study_gate records a look at a study in the audit trail. */
typedef enum dweb_audit_mode {
    DWEB_AUDIT_NONE,            /* the caller records it itself */
    DWEB_AUDIT_EACH,            /* one record per request */
    /*
     * At most one record per (session or token, study) per
     * DWEB_AUDIT_VIEW_WINDOW_S: frames, rendered pictures, thumbnails.
     */
    DWEB_AUDIT_THROTTLED,
} dweb_audit_mode;

/* What dweb_study_gate found out about the study. */
typedef struct dweb_study_access {
    int64_t institution_id;
    char patient_id[INDEX_LO_MAX + 1];
} dweb_study_access;

/*
 * Whether the request's principal may see study_uid: 0, after recording
 * the access as `event` of `type` ("wado", "frames", ...) the way `mode`
 * says, or the HTTP status to answer with (*why says why): 404 for a study
 * that does not exist and, alike, for one the principal may not see, so
 * that an answer never tells that a hidden study exists; 401 without a
 * principal; 403 for one without studies.read; 500 when the index fails.
 * Without an API (dweb_config.api NULL) every study is visible and nothing
 * is recorded. acc may be NULL.
 */
int dweb_study_gate(dweb_service *svc, const http_request *req, const char *study_uid,
                    audit_event event, const char *type, dweb_audit_mode mode,
                    dweb_study_access *acc, const char **why);

/*
 * Whether the principal may see a study of institution_id whose
 * modalities are listed in `modalities` ("CR\\CT", "" unknown): visible
 * when one of them is. The service principal and a NULL principal (no API)
 * see everything.
 */
bool dweb_visible(const principal *p, int64_t institution_id, const char *modalities);

/*
 * Whether p sees a study of institution_id with these modalities once its
 * open reading order had its say (dweb_config.order_gate): what
 * dweb_study_gate decides, so that QIDO-RS answers only rows a retrieval
 * then shows. Without an API or an order gate: dweb_visible.
 */
bool dweb_order_visible(dweb_service *svc, const principal *p, int64_t institution_id,
                        const char *modalities, const char *study_uid);

/* Records r through the API (actor and session from the request); no API: nothing. */
void dweb_audit(dweb_service *svc, const http_request *req, audit_record *r);

/*
 * Opens the blob under key as a dcm_source (with pread) that owns its
 * reader; CP_ERR_NOT_FOUND when there is none. err may be NULL.
 */
cp_status dweb_open_source(store *st, const char *key, dcm_source **out, cp_error *err);

#endif
