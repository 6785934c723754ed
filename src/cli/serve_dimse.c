/*
 * serve_dimse.c - authorisation and audit of the DICOM service of
 * `cloudpacs serve` (serve_dimse.h): the principal each association acts
 * as, from its calling AE title or its User Identity Negotiation (PS3.7
 * D.3.3.7), the institution its C-STOREs are stored under, the studies
 * its C-FIND, C-MOVE and C-GET (PS3.4 C.4) may see, and the audit records
 * of all of them in the shape of PS3.15 A.5.3 (DICOM Instances
 * Transferred, Query, User Authentication).
 *
 * Status codes: a C-STORE by a principal without studies.store, and a
 * query or retrieve by one without studies.read, are answered 0124H
 * "Refused: Not Authorized", the general failure status of PS3.7 Annex C
 * (C.5) that PS3.4 B.2.3 and C.4.1.1.4 / C.4.2.1.5 / C.4.3.1.4 leave open
 * to C-STORE, C-FIND, C-MOVE and C-GET. Studies outside a principal's
 * reach are not refused but absent: they do not match, so nothing tells
 * that they exist.
 */
#include "cli/serve_dimse.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "auth/audit.h"
#include "auth/directory.h"
#include "auth/policy.h"
#include "auth/session.h"
#include "cli/cli.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "dicom/dict.h"
#include "dicom/tag.h"
#include "net/dimse.h"

/* Everything an association may do once its principal is known. */
#define DIMSE_ALLOW_ALL (SCP_ALLOW_ECHO | SCP_ALLOW_STORE | SCP_ALLOW_QUERY | SCP_ALLOW_RETRIEVE)

/* An [ae.NAME] with `institution = CODE`. */
typedef struct dimse_ae {
    char title[PDU_AE_SIZE];
    int64_t institution_id;
} dimse_ae;

struct serve_dimse {
    scp_store_consumer inner;           /* the archive's consumer, wrapped */
    serve_auth *auth;                   /* NULL until serve_dimse_open */
    index_db *idx;
    bool accept_unknown;
    bool username_only;
    int64_t default_institution;        /* 0: unknown AEs are rejected */
    dimse_ae *aes;
    size_t ae_count;
    pthread_mutex_t lock;
    bool secured;                       /* latched once an institution exists */
};

/* C-STORE counts of one study on one association, for its audit record. */
typedef struct dimse_study {
    char uid[INDEX_UID_MAX + 1];
    char patient_id[65];                /* what an audit record keeps of it */
    int64_t institution_id;
    uint32_t stored;
} dimse_study;

/* What scp keeps for an association (scp_authoriser's identity). */
typedef struct dimse_identity {
    serve_dimse *d;
    principal *p;                       /* NULL: the open service, every study */
    char actor[65];                     /* username or AE title */
    int64_t user_id;
    char calling_ae[PDU_AE_SIZE];
    char called_ae[PDU_AE_SIZE];
    char peer[64];
    bool scope_all;
    int64_t *scope;
    size_t scope_count;
    dimse_study *studies;               /* SERVE_DIMSE_AUDIT_STUDIES_MAX, at the first */
    size_t study_count;
    uint32_t store_refused;             /* C-STOREs refused 0124H */
    uint32_t store_failed;              /* C-STOREs the archive failed */
    uint32_t store_unlisted;            /* stored, but their study not found */
} dimse_identity;

/* One C-STORE through the wrapped consumer. */
typedef struct dimse_store_op {
    serve_dimse *d;
    dimse_identity *id;                 /* NULL when no authoriser ran */
    void *inner;
    char sop_uid[PDU_UID_SIZE];
} dimse_store_op;

/* --- the audit trail ------------------------------------------------------- */

/* Appends text to a JSON string body, escaped, cut to fit. */
static void json_text(char *out, size_t cap, const char *text)
{
    size_t n = strlen(out);

    for (const char *p = text; *p != '\0' && n + 3 < cap; p++) {
        if (*p == '"' || *p == '\\')
            out[n++] = '\\';
        out[n++] = (unsigned char)*p < 0x20 ? '?' : *p;
    }
    out[n] = '\0';
}

static void json_field(char *out, size_t cap, const char *key, const char *value)
{
    size_t n = strlen(out);

    snprintf(out + n, cap - n, "%s\"%s\":\"", n > 1 ? "," : "", key);
    json_text(out, cap, value);
    n = strlen(out);
    snprintf(out + n, cap - n, "\"");
}

static void json_number(char *out, size_t cap, const char *key, uint64_t value)
{
    size_t n = strlen(out);

    snprintf(out + n, cap - n, "%s\"%s\":%" PRIu64, n > 1 ? "," : "", key, value);
}

static void json_close(char *out, size_t cap)
{
    size_t n = strlen(out);

    snprintf(out + n, cap - n, "}");
}

/* The outcome of a DIMSE status (PS3.7 Annex C) in the audit's words. */
static audit_outcome outcome_of(uint16_t status)
{
    if (status == DIMSE_SUCCESS || status == DIMSE_CANCEL || (status & 0xF000) == 0xB000)
        return AUDIT_SUCCESS;
    if (status == DIMSE_NOT_AUTHORIZED || (status & 0xFF00) == 0xA900 ||
        (status & 0xF000) == 0xC000 || status == 0xA801)
        return AUDIT_MINOR_FAILURE;
    return AUDIT_SERIOUS_FAILURE;
}

/* Who: the principal's name, roles and institution, or the AE title. */
static void record_actor(audit_record *r, const dimse_identity *id)
{
    snprintf(r->actor, sizeof r->actor, "%s", id->actor);
    snprintf(r->peer, sizeof r->peer, "%s", id->peer);
    r->user_id = id->user_id;
    if (id->p == NULL)
        return;
    if (directory_roles_format(id->p->roles, r->actor_roles, sizeof r->actor_roles) != CP_OK)
        r->actor_roles[0] = '\0';
    r->actor_institution_id = id->p->institution_id;
    snprintf(r->session_id, sizeof r->session_id, "%s", id->p->session_id);
}

static void audit_put(const serve_dimse *d, const audit_record *r)
{
    if (d->auth == NULL || d->auth->audit == NULL)
        return;
    if (audit_write(d->auth->audit, r) != CP_OK)
        cp_log_warn("dicom.audit_failed", "event=%s type=%s", audit_event_name(r->event),
                    r->type);
}

/* One DICOM Instances Transferred record per study received, then forgets them. */
static void flush_store_audit(dimse_identity *id)
{
    audit_record r;

    for (size_t i = 0; i < id->study_count; i++) {
        const dimse_study *s = &id->studies[i];

        memset(&r, 0, sizeof r);
        r.event = AUDIT_INSTANCES_TRANSFERRED;
        r.action = AUDIT_CREATE;
        r.outcome = AUDIT_SUCCESS;
        snprintf(r.type, sizeof r.type, "c-store");
        record_actor(&r, id);
        snprintf(r.object_kind, sizeof r.object_kind, "study");
        snprintf(r.object_id, sizeof r.object_id, "%s", s->uid);
        snprintf(r.patient_id, sizeof r.patient_id, "%s", s->patient_id);
        r.institution_id = s->institution_id;
        snprintf(r.detail, sizeof r.detail, "{");
        json_field(r.detail, sizeof r.detail, "calling_ae", id->calling_ae);
        json_field(r.detail, sizeof r.detail, "called_ae", id->called_ae);
        json_number(r.detail, sizeof r.detail, "instances", s->stored);
        json_close(r.detail, sizeof r.detail);
        audit_put(id->d, &r);
    }
    id->study_count = 0;
}

/* The C-STOREs no study record tells of, in one record. */
static void audit_store_failures(dimse_identity *id)
{
    audit_record r;

    if (id->store_refused == 0 && id->store_failed == 0 && id->store_unlisted == 0)
        return;
    memset(&r, 0, sizeof r);
    r.event = AUDIT_INSTANCES_TRANSFERRED;
    r.action = AUDIT_CREATE;
    r.outcome = id->store_failed > 0    ? AUDIT_SERIOUS_FAILURE
                : id->store_refused > 0 ? AUDIT_MINOR_FAILURE
                                        : AUDIT_SUCCESS;
    snprintf(r.type, sizeof r.type, "c-store");
    record_actor(&r, id);
    snprintf(r.object_kind, sizeof r.object_kind, "study");
    snprintf(r.detail, sizeof r.detail, "{");
    json_field(r.detail, sizeof r.detail, "calling_ae", id->calling_ae);
    json_field(r.detail, sizeof r.detail, "called_ae", id->called_ae);
    json_number(r.detail, sizeof r.detail, "refused", id->store_refused);
    json_number(r.detail, sizeof r.detail, "failed", id->store_failed);
    json_number(r.detail, sizeof r.detail, "stored_unlisted", id->store_unlisted);
    json_close(r.detail, sizeof r.detail);
    audit_put(id->d, &r);
    id->store_refused = 0;
    id->store_failed = 0;
    id->store_unlisted = 0;
}

/* A User Authentication record for a User Identity checked at negotiation. */
static void audit_identity(const serve_dimse *d, const scp_assoc_info *info,
                           const char *username, const principal *p, audit_outcome outcome)
{
    audit_record r;

    memset(&r, 0, sizeof r);
    r.event = AUDIT_USER_AUTHENTICATION;
    r.action = AUDIT_EXECUTE;
    r.outcome = outcome;
    snprintf(r.type, sizeof r.type, "dicom-identity");
    snprintf(r.actor, sizeof r.actor, "%s", username);
    snprintf(r.peer, sizeof r.peer, "%s", info->peer);
    if (p != NULL) {
        r.user_id = p->id;
        r.actor_institution_id = p->institution_id;
    }
    snprintf(r.object_kind, sizeof r.object_kind, "user");
    snprintf(r.object_id, sizeof r.object_id, "%s", username);
    snprintf(r.detail, sizeof r.detail, "{");
    json_field(r.detail, sizeof r.detail, "calling_ae", info->calling_ae);
    json_close(r.detail, sizeof r.detail);
    audit_put(d, &r);
}

/* --- principals ---------------------------------------------------------- */

static cp_status stop_at_first(void *ctx, const directory_institution *inst)
{
    (void)inst;
    *(bool *)ctx = true;
    return CP_ERR_STOPPED;
}

/*
 * Whether the service is secured: once the directory holds an
 * institution it stays so (institutions are disabled, never removed).
 * A directory that cannot be read fails closed: CP_ERR_UNAVAILABLE.
 */
static cp_status is_secured(serve_dimse *d, bool *secured)
{
    cp_status st = CP_OK;
    bool found = false;

    pthread_mutex_lock(&d->lock);
    if (!d->secured && d->auth != NULL && d->auth->dir != NULL) {
        st = directory_institution_list(d->auth->dir, stop_at_first, &found, NULL);
        d->secured = found;
        if (found || st == CP_ERR_STOPPED)
            st = CP_OK;
    }
    *secured = d->secured;
    pthread_mutex_unlock(&d->lock);
    return st == CP_OK ? CP_OK : CP_ERR_UNAVAILABLE;
}

/*
 * A technician of institution_id's subtree named after an AE, as
 * session_resolve_ae makes for the AEs of the directory: for [ae.NAME]
 * institution and default_institution. CP_ERR_FORBIDDEN when the
 * institution is disabled.
 */
static cp_status technician(serve_dimse *d, int64_t institution_id, const char *name,
                            const char *peer, principal **out, cp_error *err)
{
    directory_institution inst;
    int64_t *ids = NULL;
    size_t count = 0;
    principal *p = NULL;
    cp_status st;

    *out = NULL;
    st = directory_institution_get(d->auth->dir, institution_id, &inst, err);
    if (st == CP_OK && inst.disabled)
        st = CP_ERR_FORBIDDEN;
    if (st == CP_OK)
        st = directory_institution_subtree(d->auth->dir, institution_id, &ids, &count, err);
    if (st != CP_OK)
        goto done;

    p = cp_calloc(1, sizeof *p);
    if (p == NULL || (p->grants = cp_calloc(count == 0 ? 1 : count, sizeof *p->grants)) == NULL) {
        st = CP_ERR_NOMEM;
        goto done;
    }
    p->kind = PRINCIPAL_AE;
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->peer, sizeof p->peer, "%s", peer);
    p->institution_id = institution_id;
    p->roles = ROLE_TECHNICIAN;
    for (size_t i = 0; i < count; i++)
        p->grants[i].institution_id = ids[i];
    p->grant_count = count;
    p->own_grant_count = count;
    *out = p;
    p = NULL;

done:
    principal_free(p);
    cp_free(ids);
    return st;
}

static const dimse_ae *config_ae(const serve_dimse *d, const char *title)
{
    for (size_t i = 0; i < d->ae_count; i++) {
        if (strcmp(d->aes[i].title, title) == 0)
            return &d->aes[i];
    }
    return NULL;
}

/* The rights a directory AE's allow list gives ("" or unreadable: all). */
static unsigned directory_allow(const directory_ae *ae)
{
    unsigned bits;

    if (ae->allow[0] == '\0' || scp_parse_allow(ae->allow, &bits) != CP_OK)
        return DIMSE_ALLOW_ALL;
    return bits;
}

/* The calling AE's principal: configured, in the directory, or the default. */
static scp_auth_result by_ae(serve_dimse *d, const scp_assoc_info *info, unsigned *allow,
                             principal **p)
{
    const dimse_ae *cae = config_ae(d, info->calling_ae);
    directory_ae dae;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    if (cae != NULL) {
        st = technician(d, cae->institution_id, info->calling_ae, info->peer, p, &err);
    } else {
        st = directory_ae_get(d->auth->dir, info->calling_ae, &dae, &err);
        if (st == CP_OK) {
            st = session_resolve_ae(d->auth->sessions, info->calling_ae, info->peer, p, &err);
            if (st == CP_OK && !info->configured)
                *allow = directory_allow(&dae);
        } else if (st == CP_ERR_NOT_FOUND && d->default_institution > 0 &&
                   (info->configured || d->accept_unknown)) {
            st = technician(d, d->default_institution, info->calling_ae, info->peer, p,
                            &err);
        } else if (st == CP_ERR_NOT_FOUND) {
            return SCP_AUTH_REJECT_CALLING_AE;
        }
    }
    if (st == CP_OK)
        return SCP_AUTH_ACCEPT;
    cp_log_warn("dicom.auth.ae", "status=%s detail=\"%s\"", cp_status_name(st), err.detail);
    return st == CP_ERR_FORBIDDEN || st == CP_ERR_NOT_FOUND ? SCP_AUTH_REJECT
                                                            : SCP_AUTH_REJECT_TRANSIENT;
}

/* A field of the identity sub-item as text; false when it cannot be one. */
static bool field_text(const uint8_t *data, size_t len, char *out, size_t cap)
{
    if (len == 0 || len >= cap || memchr(data, 0, len) != NULL)
        return false;
    memcpy(out, data, len);
    out[len] = '\0';
    return true;
}

/* Username and passcode (type 2), checked as a login without a second factor. */
static scp_auth_result by_password(serve_dimse *d, const scp_assoc_info *info,
                                   dimse_identity *id, principal **p)
{
    char user[DIRECTORY_USERNAME_MAX + 1];
    char *pass = NULL;
    scp_auth_result res = SCP_AUTH_REJECT;
    cp_error err;
    cp_status st;

    if (!field_text(info->identity_primary, info->identity_primary_len, user, sizeof user))
        return SCP_AUTH_REJECT;
    pass = cp_malloc(info->identity_secondary_len + 1);
    if (pass == NULL)
        return SCP_AUTH_REJECT_TRANSIENT;
    if (!field_text(info->identity_secondary, info->identity_secondary_len, pass,
                    info->identity_secondary_len + 1))
        goto done;

    cp_error_clear(&err);
    st = session_resolve_password(d->auth->sessions, user, pass, info->peer, p, &err);
    if (st == CP_OK) {
        snprintf(id->actor, sizeof id->actor, "%s", user);
        id->user_id = (*p)->id;
        audit_identity(d, info, user, *p, AUDIT_SUCCESS);
        res = SCP_AUTH_ACCEPT;
    } else if (st == CP_ERR_UNAUTHENTICATED) {
        cp_log_warn("dicom.auth.identity", "username=%s detail=\"%s\"", user, err.detail);
        audit_identity(d, info, user, NULL, AUDIT_MINOR_FAILURE);
    } else {
        /* Redis (or the directory) away: the requestor may try again later. */
        cp_log_warn("dicom.auth.unavailable", "status=%s detail=\"user identity cannot be "
                    "checked: %s\"", cp_status_name(st), err.detail);
        res = SCP_AUTH_REJECT_TRANSIENT;
    }

done:
    memset(pass, 0, info->identity_secondary_len + 1);
    cp_free(pass);
    return res;
}

/* A username alone names the person for the audit trail; the AE's rights apply. */
static scp_auth_result by_username(serve_dimse *d, const scp_assoc_info *info,
                                   dimse_identity *id, unsigned *allow, principal **p)
{
    char user[DIRECTORY_USERNAME_MAX + 1];
    directory_user u;
    scp_auth_result res;

    if (!d->username_only ||
        !field_text(info->identity_primary, info->identity_primary_len, user, sizeof user))
        return SCP_AUTH_REJECT;
    if (directory_user_by_name(d->auth->dir, user, &u, NULL) != CP_OK || u.disabled)
        return SCP_AUTH_REJECT;
    res = by_ae(d, info, allow, p);
    if (res != SCP_AUTH_ACCEPT)
        return res;
    snprintf(id->actor, sizeof id->actor, "%s", u.username);
    id->user_id = u.id;
    return SCP_AUTH_ACCEPT;
}

/* The institutions the principal's queries are limited to. */
static cp_status make_scope(dimse_identity *id)
{
    size_t cap = id->p->grant_count + 1;

    id->scope = cp_calloc(cap, sizeof *id->scope);
    if (id->scope == NULL)
        return CP_ERR_NOMEM;
    policy_query_scope(id->p, &id->scope_all, id->scope, cap, &id->scope_count);
    return CP_OK;
}

static void identity_free(dimse_identity *id)
{
    if (id == NULL)
        return;
    principal_free(id->p);
    cp_free(id->scope);
    cp_free(id->studies);
    cp_free(id);
}

static scp_auth_result decide(serve_dimse *d, const scp_assoc_info *info, dimse_identity *id,
                              unsigned *allow)
{
    scp_auth_result res;

    if (!info->has_identity)
        return by_ae(d, info, allow, &id->p);
    if (info->identity_type == PDU_IDENTITY_USERNAME_PASSCODE) {
        res = by_password(d, info, id, &id->p);
        if (res == SCP_AUTH_ACCEPT)
            *allow = DIMSE_ALLOW_ALL;
        return res;
    }
    if (info->identity_type == PDU_IDENTITY_USERNAME)
        return by_username(d, info, id, allow, &id->p);
    cp_log_warn("dicom.auth.identity", "type=%u detail=\"user identity type not supported\"",
                info->identity_type);
    return SCP_AUTH_REJECT;
}

static scp_auth_result dimse_authorise(void *ctx, const scp_assoc_info *info, unsigned *allow,
                                       void **identity)
{
    serve_dimse *d = ctx;
    dimse_identity *id;
    scp_auth_result res = SCP_AUTH_ACCEPT;
    bool secured = false;

    if (d->auth == NULL)
        return SCP_AUTH_REJECT_TRANSIENT;
    id = cp_calloc(1, sizeof *id);
    if (id == NULL)
        return SCP_AUTH_REJECT_TRANSIENT;
    id->d = d;
    snprintf(id->calling_ae, sizeof id->calling_ae, "%s", info->calling_ae);
    snprintf(id->called_ae, sizeof id->called_ae, "%s", info->called_ae);
    snprintf(id->peer, sizeof id->peer, "%s", info->peer);
    snprintf(id->actor, sizeof id->actor, "%s", info->calling_ae);

    if (is_secured(d, &secured) != CP_OK) {
        cp_log_warn("dicom.auth.unavailable", "detail=\"the directory cannot be read\"");
        res = SCP_AUTH_REJECT_TRANSIENT;
    } else if (secured) {
        res = decide(d, info, id, allow);
    } else if (!info->configured && !d->accept_unknown) {
        res = SCP_AUTH_REJECT_CALLING_AE;       /* the AE rules of the open service */
    }
    if (res == SCP_AUTH_ACCEPT && id->p != NULL && make_scope(id) != CP_OK)
        res = SCP_AUTH_REJECT_TRANSIENT;
    if (res != SCP_AUTH_ACCEPT) {
        identity_free(id);
        return res;
    }
    if (id->p != NULL)
        cp_log_info("dicom.auth.accepted", "actor=%s kind=%d institution=%" PRId64,
                    id->actor, (int)id->p->kind, id->p->institution_id);
    *identity = id;
    return SCP_AUTH_ACCEPT;
}

static void dimse_release(void *ctx, void *identity)
{
    dimse_identity *id = identity;

    (void)ctx;
    flush_store_audit(id);
    audit_store_failures(id);
    identity_free(id);
}

/* --- C-STORE ------------------------------------------------------------- */

static cp_status take_row(void *ctx, const index_row *row)
{
    *(index_row *)ctx = *row;
    return CP_ERR_STOPPED;
}

/*
 * Counts an instance just stored under its study, found in the index (the
 * archive's result does not reach a store consumer's wrapper).
 */
static void note_stored(dimse_identity *id, const char *sop_uid)
{
    index_term term = { "SOPInstanceUID", sop_uid };
    index_query_spec spec;
    index_row *row = cp_calloc(1, sizeof *row);
    dimse_study *s = NULL;

    if (id->studies == NULL)
        id->studies = cp_calloc(SERVE_DIMSE_AUDIT_STUDIES_MAX, sizeof *id->studies);
    memset(&spec, 0, sizeof spec);
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = &term;
    spec.term_count = 1;
    spec.limit = 1;
    if (id->studies == NULL || row == NULL || id->d->idx == NULL ||
        index_query(id->d->idx, &spec, take_row, row, NULL) != CP_OK ||
        row->rec.study.uid[0] == '\0') {
        id->store_unlisted++;
        goto done;
    }

    for (size_t i = 0; i < id->study_count && s == NULL; i++) {
        if (strcmp(id->studies[i].uid, row->rec.study.uid) == 0)
            s = &id->studies[i];
    }
    if (s == NULL) {
        if (id->study_count == SERVE_DIMSE_AUDIT_STUDIES_MAX)
            flush_store_audit(id);
        s = &id->studies[id->study_count++];
        memset(s, 0, sizeof *s);
        snprintf(s->uid, sizeof s->uid, "%s", row->rec.study.uid);
        snprintf(s->patient_id, sizeof s->patient_id, "%.*s",
                 (int)sizeof s->patient_id - 1, row->rec.patient.id);
        s->institution_id = row->institution_id;
    }
    s->stored++;

done:
    cp_free(row);
}

int64_t serve_dimse_institution(const void *identity)
{
    const dimse_identity *id = identity;

    return id != NULL && id->p != NULL ? id->p->institution_id : 0;
}

static cp_status cstore_begin(void *ctx, const scp_store_info *info, void **op,
                             uint16_t *status)
{
    serve_dimse *d = ctx;
    dimse_identity *id = info->identity;
    dimse_store_op *o;
    cp_status st;

    *op = NULL;
    if (id != NULL && id->p != NULL && !policy_allows(id->p, POLICY_STUDY_STORE)) {
        /* PS3.7 C.5 via PS3.4 B.2.3: 0124H Refused: Not Authorized. */
        *status = DIMSE_NOT_AUTHORIZED;
        id->store_refused++;
        return CP_ERR_FORBIDDEN;
    }
    o = cp_calloc(1, sizeof *o);
    if (o == NULL) {
        *status = DIMSE_OUT_OF_RESOURCES;
        return CP_ERR_NOMEM;
    }
    st = d->inner.begin(d->inner.ctx, info, &o->inner, status);
    if (st != CP_OK) {
        if (id != NULL)
            id->store_failed++;
        cp_free(o);
        return st;
    }
    o->d = d;
    o->id = id;
    snprintf(o->sop_uid, sizeof o->sop_uid, "%s", info->sop_instance_uid);
    *op = o;
    return CP_OK;
}

static cp_status cstore_write(void *op, const void *data, size_t len)
{
    dimse_store_op *o = op;

    return o->d->inner.write(o->inner, data, len);
}

static uint16_t cstore_finish(void *op, char *comment, size_t comment_size)
{
    dimse_store_op *o = op;
    uint16_t status = o->d->inner.finish(o->inner, comment, comment_size);

    if (o->id != NULL && (status == DIMSE_SUCCESS || (status & 0xF000) == 0xB000))
        note_stored(o->id, o->sop_uid);
    else if (o->id != NULL)
        o->id->store_failed++;
    cp_free(o);
    return status;
}

static void cstore_abort(void *op)
{
    dimse_store_op *o = op;

    o->d->inner.abort(o->inner);
    if (o->id != NULL)
        o->id->store_failed++;
    cp_free(o);
}

/* --- query/retrieve -------------------------------------------------------- */

static bool qr_scope(void *ctx, void *identity, index_query_spec *spec)
{
    const dimse_identity *id = identity;

    (void)ctx;
    if (id == NULL || id->p == NULL)
        return true;
    if (!policy_allows(id->p, POLICY_STUDY_READ))
        return false;
    if (!id->scope_all) {
        spec->institutions = id->scope;
        spec->institution_count = id->scope_count;
    }
    return true;
}

static bool qr_visible(void *ctx, void *identity, int64_t institution_id, const char *modality)
{
    const dimse_identity *id = identity;

    (void)ctx;
    return id == NULL || id->p == NULL ||
           policy_study_visible(id->p, institution_id, modality);
}

/*
 * The query as text for the audit record: its level and every key with a
 * value, by keyword, leaving out person names (VR PN) so that no patient's
 * name reaches the trail. Cut at the record's size.
 */
static void query_text(const qr_query *q, char *out, size_t cap)
{
    static const char *const levels[] = { "PATIENT", "STUDY", "SERIES", "IMAGE" };
    size_t n;

    snprintf(out, cap, "level=%s", levels[q->level]);
    for (size_t i = 0; i < q->key_count; i++) {
        const qr_key *k = &q->keys[i];
        const dcm_dict_entry *e = dcm_dict_lookup(k->tag);

        if (k->vr == DCM_VR_PN || k->value == NULL || k->value[0] == '\0' ||
            k->tag == DCM_TAG(0x0008, 0x0052))
            continue;
        n = strlen(out);
        if (e != NULL && e->keyword[0] != '\0')
            snprintf(out + n, cap - n, " %s=%s", e->keyword, k->value);
        else
            snprintf(out + n, cap - n, " (%04X,%04X)=%s", (unsigned)(k->tag >> 16),
                     (unsigned)(k->tag & 0xFFFF), k->value);
    }
}

/* A key's value, or "". */
static const char *key_value(const qr_query *q, uint32_t tag)
{
    for (size_t i = 0; q != NULL && i < q->key_count; i++) {
        if (q->keys[i].tag == tag && q->keys[i].value != NULL)
            return q->keys[i].value;
    }
    return "";
}

static void audit_find(const dimse_identity *id, const qr_audit_info *info)
{
    audit_record r;
    char status[8];

    memset(&r, 0, sizeof r);
    r.event = AUDIT_QUERY;
    r.action = AUDIT_EXECUTE;
    r.outcome = outcome_of(info->status);
    snprintf(r.type, sizeof r.type, "c-find");
    record_actor(&r, id);
    snprintf(r.object_kind, sizeof r.object_kind, "query");
    if (info->query != NULL) {
        query_text(info->query, r.object_id, sizeof r.object_id);
        snprintf(r.patient_id, sizeof r.patient_id, "%s",
                 key_value(info->query, DCM_TAG(0x0010, 0x0020)));
    }
    snprintf(status, sizeof status, "0x%04x", info->status);
    snprintf(r.detail, sizeof r.detail, "{");
    json_field(r.detail, sizeof r.detail, "calling_ae", id->calling_ae);
    json_field(r.detail, sizeof r.detail, "called_ae", id->called_ae);
    json_field(r.detail, sizeof r.detail, "status", status);
    json_number(r.detail, sizeof r.detail, "matches", info->matches);
    json_close(r.detail, sizeof r.detail);
    audit_put(id->d, &r);
}

/* One record per study a C-MOVE or C-GET reached; one for the request when none. */
static void audit_retrieve(const dimse_identity *id, const qr_audit_info *info)
{
    const char *type = info->command_field == DIMSE_C_MOVE_RQ ? "c-move" : "c-get";
    size_t n = info->study_count > 0 ? info->study_count : 1;
    char status[8];

    snprintf(status, sizeof status, "0x%04x", info->status);
    for (size_t i = 0; i < n; i++) {
        const qr_audit_study *s = info->study_count > 0 ? &info->studies[i] : NULL;
        audit_record r;

        memset(&r, 0, sizeof r);
        r.event = AUDIT_INSTANCES_TRANSFERRED;
        r.action = AUDIT_READ;
        r.outcome = outcome_of(info->status);
        snprintf(r.type, sizeof r.type, "%s", type);
        record_actor(&r, id);
        snprintf(r.object_kind, sizeof r.object_kind, "study");
        snprintf(r.object_id, sizeof r.object_id, "%s",
                 s != NULL ? s->study_uid : key_value(info->query, DCM_TAG(0x0020, 0x000D)));
        snprintf(r.patient_id, sizeof r.patient_id, "%s",
                 s != NULL ? s->patient_id : key_value(info->query, DCM_TAG(0x0010, 0x0020)));
        r.institution_id = s != NULL ? s->institution_id : 0;
        snprintf(r.detail, sizeof r.detail, "{");
        json_field(r.detail, sizeof r.detail, "calling_ae", id->calling_ae);
        if (info->command_field == DIMSE_C_MOVE_RQ)
            json_field(r.detail, sizeof r.detail, "destination", info->move_destination);
        json_field(r.detail, sizeof r.detail, "status", status);
        json_number(r.detail, sizeof r.detail, "instances", s != NULL ? s->instances : 0);
        json_number(r.detail, sizeof r.detail, "sent", s != NULL ? s->sent : 0);
        json_close(r.detail, sizeof r.detail);
        audit_put(id->d, &r);
    }
}

static void qr_audit(void *ctx, void *identity, const qr_audit_info *info)
{
    const dimse_identity *id = identity;

    (void)ctx;
    if (id == NULL)
        return;
    if (info->command_field == DIMSE_C_FIND_RQ)
        audit_find(id, info);
    else
        audit_retrieve(id, info);
}

void serve_dimse_wire_qr(serve_dimse *d, qr_config *qc)
{
    qc->auth.scope = qr_scope;
    qc->auth.visible = qr_visible;
    qc->auth.audit = qr_audit;
    qc->auth.ctx = d;
}

/* --- life ------------------------------------------------------------------ */

cp_status serve_dimse_create(scp_config *sc, serve_dimse **out)
{
    serve_dimse *d = cp_calloc(1, sizeof *d);

    *out = NULL;
    if (d == NULL)
        return CP_ERR_NOMEM;
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        cp_free(d);
        return CP_ERR_NOMEM;
    }
    d->inner = sc->store;
    sc->authoriser.authorise = dimse_authorise;
    sc->authoriser.release = dimse_release;
    sc->authoriser.ctx = d;
    if (d->inner.begin != NULL) {
        sc->store.begin = cstore_begin;
        sc->store.write = cstore_write;
        sc->store.finish = cstore_finish;
        sc->store.abort = cstore_abort;
        sc->store.ctx = d;
    }
    *out = d;
    return CP_OK;
}

/* An institution by code, or CLI_EXIT_CONFIG with one line on stderr. */
static int institution_of(serve_dimse *d, const char *where, const char *code, int64_t *id)
{
    directory_institution inst;
    char text[CP_ERROR_DETAIL_MAX + 64];
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    st = directory_institution_by_code(d->auth->dir, code, &inst, &err);
    if (st == CP_OK) {
        *id = inst.id;
        return CLI_EXIT_OK;
    }
    if (st == CP_ERR_NOT_FOUND || st == CP_ERR_INVALID) {
        fprintf(stderr, "cloudpacs serve: %s: unknown institution \"%s\"\n", where, code);
        return CLI_EXIT_CONFIG;
    }
    fprintf(stderr, "cloudpacs serve: %s: %s\n", where, cp_error_format(&err, text,
                                                                        sizeof text));
    return CLI_EXIT_FAILURE;
}

/* Every [ae.NAME] with an institution. */
static int read_aes(serve_dimse *d, const cp_config *cfg)
{
    const char *name;
    size_t n = 0;

    for (size_t i = 0; (name = cp_config_section_at(cfg, i)) != NULL; i++)
        n += strncmp(name, "ae.", 3) == 0 && name[3] != '\0';
    d->aes = cp_calloc(n == 0 ? 1 : n, sizeof *d->aes);
    if (d->aes == NULL)
        return CLI_EXIT_FAILURE;
    for (size_t i = 0; (name = cp_config_section_at(cfg, i)) != NULL; i++) {
        const char *code, *title;
        char where[96];
        dimse_ae *ae = &d->aes[d->ae_count];
        int rc;

        if (strncmp(name, "ae.", 3) != 0 || name[3] == '\0')
            continue;
        code = cp_config_get(cfg, name, "institution", "");
        if (code[0] == '\0')
            continue;
        title = cp_config_get(cfg, name, "title", name + 3);
        snprintf(where, sizeof where, "[%s] institution", name);
        rc = institution_of(d, where, code, &ae->institution_id);
        if (rc != CLI_EXIT_OK)
            return rc;
        snprintf(ae->title, sizeof ae->title, "%s", title);
        cp_log_info("serve.ae_institution", "title=%s institution=%" PRId64, ae->title,
                    ae->institution_id);
        d->ae_count++;
    }
    return CLI_EXIT_OK;
}

int serve_dimse_open(serve_dimse *d, const cp_config *cfg, serve_auth *auth, index_db *idx,
                     bool accept_unknown)
{
    const char *code = cp_config_get(cfg, "dicom", "default_institution", "");
    bool secured = false;
    cp_error err;
    int rc;

    cp_error_clear(&err);
    if (cp_config_get_bool(cfg, "dicom", "identity_username_only", false, &d->username_only,
                           &err) != CP_OK) {
        char text[CP_ERROR_DETAIL_MAX + 64];

        fprintf(stderr, "cloudpacs serve: %s\n", cp_error_format(&err, text, sizeof text));
        return CLI_EXIT_CONFIG;
    }
    d->auth = auth;
    d->idx = idx;
    d->accept_unknown = accept_unknown;
    rc = read_aes(d, cfg);
    if (rc == CLI_EXIT_OK && code[0] != '\0')
        rc = institution_of(d, "[dicom] default_institution", code, &d->default_institution);
    if (rc != CLI_EXIT_OK) {
        d->auth = NULL;
        return rc;
    }
    is_secured(d, &secured);
    cp_log_info("serve.dicom_auth", "secured=%s aes_with_institution=%zu "
                "default_institution=%" PRId64 " identity_username_only=%s",
                secured ? "true" : "false", d->ae_count, d->default_institution,
                d->username_only ? "true" : "false");
    return CLI_EXIT_OK;
}

void serve_dimse_destroy(serve_dimse *d)
{
    if (d == NULL)
        return;
    pthread_mutex_destroy(&d->lock);
    cp_free(d->aes);
    cp_free(d);
}
