/*
 * dicomweb.c - the DICOMweb service (PS3.18 section 10): its routes under
 * /dicom-web (the Studies Service resources of PS3.18 10.3, Table 10.3-1)
 * and the small helpers the QIDO-RS, WADO-RS and STOW-RS files share,
 * among them the gate every retrieval passes: whether the principal may
 * see the study, and the audit record of the look (PS3.15 A.5.3.3, DICOM
 * Instances Accessed).
 */
#include "dicomweb/dicomweb.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicomweb/qido.h"
#include "dicomweb/render.h"
#include "dicomweb/stow.h"
#include "dicomweb/wado.h"
#include "dicomweb/wado_uri.h"

/* Bytes of an ETag kept as a cache key (ours are 40). */
#define DWEB_ETAG_MAX 64

typedef struct dweb_cache_entry {
    char etag[DWEB_ETAG_MAX];
    uint8_t *data;
    size_t len;
    uint64_t used;              /* the tick of its last use */
} dweb_cache_entry;

/* One (session, study) recorded lately; see DWEB_AUDIT_VIEW_SLOTS. */
typedef struct dweb_view_slot {
    uint64_t key;
    int64_t at_s;
} dweb_view_slot;

struct dweb_service {
    dweb_config cfg;
    dweb_view_slot *views;      /* DWEB_AUDIT_VIEW_SLOTS, guarded by lock */
    pthread_mutex_t lock;       /* guards the cache and views */
    dweb_cache_entry *cache;    /* DWEB_METADATA_ENTRIES_MAX slots */
    size_t cache_bytes;
    uint64_t tick;
};

typedef struct dweb_route {
    unsigned methods;
    const char *pattern;
    unsigned flags;
    http_handler_fn handler;
} dweb_route;

/*
 * In registration order: the router tries them in turn, so the fixed
 * segments (metadata, frames, bulkdata) come before nothing that could
 * shadow them; every pattern has its own segment count anyway.
 */
static const dweb_route dweb_routes[] = {
    { HTTP_GET, DWEB_PREFIX "/studies", 0, dweb_qido_handle },
    { HTTP_GET, DWEB_PREFIX "/series", 0, dweb_qido_handle },
    { HTTP_GET, DWEB_PREFIX "/instances", 0, dweb_qido_handle },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/series", 0, dweb_qido_handle },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/instances", 0, dweb_qido_handle },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/series/{series}/instances", 0,
      dweb_qido_handle },

    { HTTP_GET, DWEB_PREFIX "/studies/{study}", 0, dweb_wado_retrieve },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/series/{series}", 0, dweb_wado_retrieve },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/series/{series}/instances/{instance}", 0,
      dweb_wado_retrieve },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/metadata", 0, dweb_wado_metadata },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/series/{series}/metadata", 0,
      dweb_wado_metadata },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/series/{series}/instances/{instance}/metadata",
      0, dweb_wado_metadata },
    { HTTP_GET,
      DWEB_PREFIX "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
      0, dweb_wado_frames },
    { HTTP_GET,
      DWEB_PREFIX "/studies/{study}/series/{series}/instances/{instance}/bulkdata/*",
      0, dweb_wado_bulkdata },


    /* Rendered resources and thumbnails (PS3.18 10.4.1.1.3 and .4, render.h). */
#define DWEB_INSTANCE DWEB_PREFIX "/studies/{study}/series/{series}/instances/{instance}"
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/rendered", 0, dweb_render_rendered },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/series/{series}/rendered", 0,
      dweb_render_rendered },
    { HTTP_GET, DWEB_INSTANCE "/rendered", 0, dweb_render_rendered },
    { HTTP_GET, DWEB_INSTANCE "/frames/{frames}/rendered", 0, dweb_render_rendered },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/thumbnail", 0, dweb_render_thumbnail },
    { HTTP_GET, DWEB_PREFIX "/studies/{study}/series/{series}/thumbnail", 0,
      dweb_render_thumbnail },
    { HTTP_GET, DWEB_INSTANCE "/thumbnail", 0, dweb_render_thumbnail },
    { HTTP_GET, DWEB_INSTANCE "/frames/{frames}/thumbnail", 0, dweb_render_thumbnail },
#undef DWEB_INSTANCE

    /* WADO-URI (PS3.18 section 9, wado_uri.h), at the root and under the prefix. */
    { HTTP_GET, DWEB_WADO_URI_PATH, 0, dweb_wado_uri_handle },
    { HTTP_GET, DWEB_PREFIX DWEB_WADO_URI_PATH, 0, dweb_wado_uri_handle },

    { HTTP_POST, DWEB_PREFIX "/studies", HTTP_ROUTE_LARGE_BODY, dweb_stow_handle },
    { HTTP_POST, DWEB_PREFIX "/studies/{study}", HTTP_ROUTE_LARGE_BODY, dweb_stow_handle },
};

cp_status dweb_register(http_server *srv, const dweb_config *cfg, dweb_service **out,
                        cp_error *err)
{
    dweb_service *svc;

    *out = NULL;
    if (cfg->arc == NULL || cfg->idx == NULL || cfg->st == NULL)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "DICOMweb needs an archive, an index and a store");
    svc = cp_calloc(1, sizeof *svc);
    if (svc == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    svc->cfg = *cfg;
    svc->cache = cp_calloc(DWEB_METADATA_ENTRIES_MAX, sizeof *svc->cache);
    svc->views = cp_calloc(DWEB_AUDIT_VIEW_SLOTS, sizeof *svc->views);
    if (svc->cache == NULL || svc->views == NULL || pthread_mutex_init(&svc->lock, NULL) != 0) {
        cp_free(svc->views);
        cp_free(svc->cache);
        cp_free(svc);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "out of memory");
    }

    for (size_t i = 0; i < sizeof dweb_routes / sizeof dweb_routes[0]; i++) {
        const dweb_route *r = &dweb_routes[i];
        cp_status st = http_server_route(srv, r->methods, r->pattern, r->flags, r->handler,
                                         svc);

        if (st != CP_OK) {
            dweb_destroy(svc);
            return cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "cannot register %s", r->pattern);
        }
    }
    *out = svc;
    return CP_OK;
}

void dweb_destroy(dweb_service *svc)
{
    if (svc == NULL)
        return;
    for (size_t i = 0; i < DWEB_METADATA_ENTRIES_MAX; i++)
        cp_free(svc->cache[i].data);
    cp_free(svc->cache);
    cp_free(svc->views);
    pthread_mutex_destroy(&svc->lock);
    cp_free(svc);
}

cp_status dweb_cache_get(dweb_service *svc, const char *etag, cp_buf *out)
{
    cp_status st = CP_ERR_NOT_FOUND;

    pthread_mutex_lock(&svc->lock);
    for (size_t i = 0; i < DWEB_METADATA_ENTRIES_MAX; i++) {
        dweb_cache_entry *e = &svc->cache[i];

        if (e->data == NULL || strcmp(e->etag, etag) != 0)
            continue;
        e->used = ++svc->tick;
        st = cp_buf_append(out, e->data, e->len);
        break;
    }
    pthread_mutex_unlock(&svc->lock);
    return st;
}

/* The least recently used answer held, or NULL when the cache is empty. */
static dweb_cache_entry *cache_lru(dweb_service *svc)
{
    dweb_cache_entry *lru = NULL;

    for (size_t i = 0; i < DWEB_METADATA_ENTRIES_MAX; i++)
        if (svc->cache[i].data != NULL && (lru == NULL || svc->cache[i].used < lru->used))
            lru = &svc->cache[i];
    return lru;
}

static void cache_drop(dweb_service *svc, dweb_cache_entry *e)
{
    svc->cache_bytes -= e->len;
    cp_free(e->data);
    memset(e, 0, sizeof *e);
}

void dweb_cache_put(dweb_service *svc, const char *etag, uint8_t *data, size_t len)
{
    dweb_cache_entry *e;

    if (len > DWEB_METADATA_ENTRY_MAX || strlen(etag) >= DWEB_ETAG_MAX) {
        cp_free(data);
        return;
    }
    pthread_mutex_lock(&svc->lock);
    for (size_t i = 0; i < DWEB_METADATA_ENTRIES_MAX; i++)
        if (svc->cache[i].data != NULL && strcmp(svc->cache[i].etag, etag) == 0)
            cache_drop(svc, &svc->cache[i]);
    while (svc->cache_bytes + len > DWEB_METADATA_CACHE_MAX && (e = cache_lru(svc)) != NULL)
        cache_drop(svc, e);

    e = NULL;
    for (size_t i = 0; i < DWEB_METADATA_ENTRIES_MAX && e == NULL; i++)
        if (svc->cache[i].data == NULL)
            e = &svc->cache[i];
    if (e == NULL) {
        e = cache_lru(svc);
        cache_drop(svc, e);
    }
    snprintf(e->etag, sizeof e->etag, "%s", etag);
    e->data = data;
    e->len = len;
    e->used = ++svc->tick;
    svc->cache_bytes += len;
    pthread_mutex_unlock(&svc->lock);
}

const dweb_config *dweb_service_config(const dweb_service *svc)
{
    return &svc->cfg;
}

cp_status dweb_json_string_n(cp_buf *out, const char *s, size_t len)
{
    cp_status st = cp_buf_append_byte(out, '"');
    size_t start = 0;

    for (size_t i = 0; i < len && st == CP_OK; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        st = cp_buf_append(out, s + start, i - start);
        if (st != CP_OK)
            break;
        if (c == '"' || c == '\\')
            st = cp_buf_appendf(out, "\\%c", c);
        else
            st = cp_buf_appendf(out, "\\u%04x", c);
        start = i + 1;
    }
    if (st == CP_OK)
        st = cp_buf_append(out, s + start, len - start);
    return st == CP_OK ? cp_buf_append_byte(out, '"') : st;
}

cp_status dweb_json_string(cp_buf *out, const char *s)
{
    return dweb_json_string_n(out, s, strlen(s));
}

cp_status dweb_root_url(const http_request *req, char *out, size_t cap)
{
    size_t n;
    cp_status st = http_request_base_url(req, out, cap);

    if (st != CP_OK)
        return st;
    n = strlen(out);
    if (n + sizeof DWEB_PREFIX > cap)
        return CP_ERR_LIMIT;
    memcpy(out + n, DWEB_PREFIX, sizeof DWEB_PREFIX);
    return CP_OK;
}

bool dweb_uid_is_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > INDEX_UID_MAX)
        return false;
    return strspn(s, "0123456789.") == n;
}

/* --- who asks ------------------------------------------------------------------ */

bool dweb_visible(const principal *p, int64_t institution_id, const char *modalities)
{
    const char *m = modalities;

    if (p == NULL || p->kind == PRINCIPAL_SERVICE)
        return true;
    if (m == NULL || m[0] == '\0')
        return policy_study_visible(p, institution_id, NULL);
    while (*m != '\0') {
        size_t n = strcspn(m, "\\");
        char one[INDEX_CS_MAX + 1];

        if (n > 0 && n <= INDEX_CS_MAX) {
            memcpy(one, m, n);
            one[n] = '\0';
            if (policy_study_visible(p, institution_id, one))
                return true;
        }
        m += n;
        if (*m == '\\')
            m++;
    }
    return false;
}

void dweb_audit(dweb_service *svc, const http_request *req, audit_record *r)
{
    if (svc->cfg.api != NULL)
        api_audit(svc->cfg.api, req, r);
}

typedef struct gate_row {
    bool found;
    int64_t institution_id;
    char modalities[INDEX_MODALITIES_MAX + 1];
    char patient_id[INDEX_LO_MAX + 1];
} gate_row;

static cp_status gate_on_row(void *ctx, const index_row *row)
{
    gate_row *g = ctx;

    g->found = true;
    g->institution_id = row->institution_id;
    memcpy(g->modalities, row->modalities_in_study, sizeof g->modalities);
    memcpy(g->patient_id, row->rec.patient.id, sizeof g->patient_id);
    return CP_ERR_STOPPED;
}

/* Whether the institution is one of p's own (not opened by a contract). */
static bool own_grant(const principal *p, int64_t institution_id)
{
    size_t own = p->own_grant_count;

    for (size_t i = 0; i < own && i < p->grant_count; i++)
        if (p->grants[i].institution_id == institution_id)
            return true;
    return false;
}

/* FNV-1a of who asks (the session, else the principal) and the study. */
static uint64_t view_key(const principal *p, const char *study_uid)
{
    char who[128];
    uint64_t h = 0xcbf29ce484222325ull;

    if (p->session_id[0] != '\0')
        snprintf(who, sizeof who, "s:%s", p->session_id);
    else
        snprintf(who, sizeof who, "p:%d:%lld:%s", (int)p->kind, (long long)p->id, p->name);
    for (const char *c = who; *c != '\0'; c++)
        h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    h = (h ^ 0xFF) * 0x100000001b3ull;
    for (const char *c = study_uid; *c != '\0'; c++)
        h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    return h;
}

/* Whether this look is the first of its (session, study) in the window. */
static bool view_is_new(dweb_service *svc, const principal *p, const char *study_uid)
{
    uint64_t key = view_key(p, study_uid);
    dweb_view_slot *slot = &svc->views[key % DWEB_AUDIT_VIEW_SLOTS];
    struct timespec ts;
    bool fresh;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    pthread_mutex_lock(&svc->lock);
    fresh = slot->key != key || ts.tv_sec - slot->at_s >= DWEB_AUDIT_VIEW_WINDOW_S;
    if (fresh) {
        slot->key = key;
        slot->at_s = ts.tv_sec;
    }
    pthread_mutex_unlock(&svc->lock);
    return fresh;
}

/*
 * The policy's answer, corrected by the study's open reading order: the
 * order opens the study to whoever reads it, and closes it to the other
 * doctors who would see it only through a contract (their own
 * institution's studies stay theirs).
 */
bool dweb_order_visible(dweb_service *svc, const principal *p, int64_t institution_id,
                        const char *modalities, const char *study_uid)
{
    bool visible = dweb_visible(p, institution_id, modalities);
    bool doctor;
    int says;

    if (p == NULL || svc->cfg.order_gate == NULL || p->kind == PRINCIPAL_SERVICE)
        return visible;
    doctor = (p->roles & (ROLE_RADIOLOGIST | ROLE_REVIEWER)) != 0;
    /* An order opens or closes studies to doctors only: nobody else need ask. */
    if (!doctor)
        return visible;
    /* What is one's own stays visible whatever an order says: no need to ask. */
    if (visible && (policy_manages_institution(p, institution_id) ||
                    own_grant(p, institution_id)))
        return true;
    says = svc->cfg.order_gate(svc->cfg.order_gate_ctx, p, study_uid);
    if (says == DWEB_ORDER_OPENS)
        return true;
    if (says == DWEB_ORDER_CLOSES && visible)
        return false;
    return visible;
}

int dweb_study_gate(dweb_service *svc, const http_request *req, const char *study_uid,
                    audit_event event, const char *type, dweb_audit_mode mode,
                    dweb_study_access *acc, const char **why)
{
    const principal *p;
    index_term term = { "StudyInstanceUID", study_uid };
    index_query_spec spec;
    gate_row g;
    audit_record r;

    if (acc != NULL)
        memset(acc, 0, sizeof *acc);
    if (svc->cfg.api == NULL)
        return 0;
    p = api_principal(req);
    if (p == NULL) {
        *why = "authentication required";
        return 401;
    }
    /* Refusing a role that reads no study at all tells nothing about this one. */
    if (!policy_allows(p, POLICY_STUDY_READ)) {
        *why = "studies.read is needed";
        return 403;
    }

    memset(&g, 0, sizeof g);
    memset(&spec, 0, sizeof spec);
    spec.level = INDEX_LEVEL_STUDY;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = 1;
    if (index_query(svc->cfg.idx, &spec, gate_on_row, &g, NULL) != CP_OK) {
        *why = "the index query failed";
        return 500;
    }
    if (!g.found || !dweb_order_visible(svc, p, g.institution_id, g.modalities, study_uid)) {
        *why = "no such study";
        return 404;
    }
    if (acc != NULL) {
        acc->institution_id = g.institution_id;
        memcpy(acc->patient_id, g.patient_id, sizeof acc->patient_id);
    }

    if (mode == DWEB_AUDIT_NONE ||
        (mode == DWEB_AUDIT_THROTTLED && !view_is_new(svc, p, study_uid)))
        return 0;
    memset(&r, 0, sizeof r);
    r.event = event;
    r.action = AUDIT_READ;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof r.type, "%s", type);
    snprintf(r.object_kind, sizeof r.object_kind, "study");
    snprintf(r.object_id, sizeof r.object_id, "%s", study_uid);
    memcpy(r.patient_id, g.patient_id, sizeof r.patient_id < sizeof g.patient_id
                                       ? sizeof r.patient_id : sizeof g.patient_id);
    r.patient_id[sizeof r.patient_id - 1] = '\0';
    r.institution_id = g.institution_id;
    dweb_audit(svc, req, &r);
    return 0;
}

/* --- a dcm_source over a blob ------------------------------------------------ */

static cp_status rd_read(void *ctx, void *buf, size_t len, size_t *got)
{
    return store_read(ctx, buf, len, got, NULL);
}

static cp_status rd_pread(void *ctx, uint64_t offset, void *buf, size_t len, size_t *got)
{
    return store_pread(ctx, offset, buf, len, got, NULL);
}

static void rd_close(void *ctx)
{
    store_close(ctx);
}

static const dcm_source_ops rd_ops = { rd_read, rd_pread, rd_close };

cp_status dweb_open_source(store *st, const char *key, dcm_source **out, cp_error *err)
{
    store_reader *rd = NULL;
    cp_status status = store_open(st, key, &rd, err);

    *out = NULL;
    if (status != CP_OK)
        return status;
    *out = dcm_source_create(&rd_ops, rd);
    if (*out == NULL) {
        store_close(rd);
        return CP_ERR_NOMEM;
    }
    dcm_source_set_size(*out, store_reader_size(rd));
    return CP_OK;
}
